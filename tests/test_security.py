"""Loading a file never runs code, hangs or reads what it should not: YAML alias bombs (configs,
YOLO data YAMLs, dataset YAMLs), XML entity expansion and external entities, pickle payloads given to
the commands. Each refusal is one line naming the file; the good data beside the bad is still used."""

import pytest
import torch

from multibox.cli import main
from multibox.config import Config
from multibox.data.formats import detect_format
from multibox.data.problems import ProblemLog
from multibox.data.voc import VOCDataset
from multibox.data.yolo import YOLODataset
from multibox.errors import UserError
from multibox.yaml_files import MAX_EXPANDED_NODES, expanded_size, parse_yaml, read_yaml
from tests.fixtures.datasets import basic_spec, write_voc, write_yolo


def yaml_bomb(levels: int = 9) -> str:
    """ "Billion laughs" in YAML: 9 anchors, each a list of 9 aliases of the previous one (9^9 leaves)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_yaml_bomb_refused_in_a_run_config(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train: {lr: 0.1}\n" + yaml_bomb())
    with pytest.raises(UserError) as info:
        Config.from_yaml(path)
    assert str(info.value).startswith(f"{path}: refused: aliases expand it to more than")


def test_yaml_bomb_refused_in_a_yolo_data_yaml(tmp_path):
    path = write_yolo(tmp_path / "yolo", basic_spec())
    path.write_text(path.read_text() + yaml_bomb())
    with pytest.raises(UserError, match=r"data\.yaml: refused: aliases expand"):
        YOLODataset.from_yaml(path, "train", problems=ProblemLog(echo=None))
    with pytest.raises(UserError, match=r"data\.yaml: refused: aliases expand"):
        detect_format(path)  # the dataset-YAML sniffing reads it through the same function


def test_yaml_bomb_through_the_cli_exits_2(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml_bomb())
    assert main(["train", "--out", str(tmp_path / "run"), "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bomb.yaml" in err and "refused" in err and "Traceback" not in err


def test_small_aliases_still_work_and_size_is_linear():
    doc = parse_yaml("base: &b {lr: 0.1, steps: 3}\ntrain: *b\nother: *b\n", "x.yaml")
    assert doc["train"] == {"lr": 0.1, "steps": 3} and doc["other"] is doc["train"]
    import yaml

    node = yaml.compose(yaml_bomb(levels=5))  # 9^5 = 59,049 leaves: allowed, counted without expanding
    assert 9**5 < expanded_size(node) < MAX_EXPANDED_NODES


@pytest.mark.parametrize("text, message", [
    ("a: &a [*a]\n", "refused: a recursive alias"),
    ("[" * 3000 + "]" * 3000, "refused: nested too deeply"),
    ("a: !!python/object/apply:os.system ['touch pwned']\n", "malformed YAML"),
    ("a: [1, 2\n", "line 2: malformed YAML"),
])
def test_other_hostile_yaml(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        read_yaml(path)
    assert str(info.value).startswith(f"{path}:") and message in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_read_yaml_file_problems(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_yaml(tmp_path / "none.yaml")
    with pytest.raises(UserError, match="is a folder"):
        read_yaml(tmp_path)
    (tmp_path / "l.yaml").write_text("- 1\n")
    with pytest.raises(UserError, match="got a list"):
        read_yaml(tmp_path / "l.yaml", mapping=True)
    assert read_yaml(tmp_path / "l.yaml") == [1]


XML_BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>img_a.jpg</filename><size><width>64</width><height>48</height></size>
<object><name>&lol9;</name><bndbox><xmin>4</xmin><ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
</annotation>
"""

XML_EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE annotation [ <!ENTITY secret SYSTEM "file://{secret}"> ]>
<annotation><filename>img_b.jpg</filename><size><width>50</width><height>70</height></size>
<object><name>&secret;</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>50</xmax><ymax>70</ymax></bndbox></object>
</annotation>
"""


def voc_with(tmp_path, name: str, xml: str) -> tuple[VOCDataset, ProblemLog]:
    root = write_voc(tmp_path / "voc", basic_spec())
    (root / "Annotations" / f"{name}.xml").write_text(xml)
    log = ProblemLog(echo=None)
    return VOCDataset(root, "train", cache=False, problems=log), log


def test_xml_entity_expansion_is_refused(tmp_path):
    dataset, log = voc_with(tmp_path, "img_a", XML_BOMB)
    assert log.counts["malformed-xml"] == 1
    assert "img_a.xml" in str(log.problems[0]) and "amplification" in str(log.problems[0])
    assert sorted(r.image_id for r in dataset.records) == ["img_b", "img_c"]  # the good images are used


def test_xml_external_entity_is_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    dataset, log = voc_with(tmp_path, "img_b", XML_EXTERNAL.format(secret=secret))
    assert "TOPSECRET" not in " ".join(dataset.class_names) + " ".join(str(p) for p in log.problems)
    assert log.counts["malformed-xml"] == 1 and "img_b.xml" in str(log.problems[0])
    assert sorted(r.image_id for r in dataset.records) == ["img_a", "img_c"]


class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("command", [
    ["evaluate", "--model", "{model}", "--out", "{out}"],
    ["export", "--model", "{model}", "--format", "onnx", "--out", "{out}/m.onnx"],
    ["detect", "--model", "{model}", "--out", "{out}", "{image}"],
])
def test_pickle_payload_checkpoint_through_the_cli(tmp_path, capsys, command):
    from PIL import Image

    target = tmp_path / "payload-ran"
    model = tmp_path / "model.pt"
    torch.save({"task": "localizer", "model": {}, "config": {}, "x": Payload(target)}, model)
    image = tmp_path / "a.jpg"
    Image.new("RGB", (32, 32)).save(image)
    argv = [a.format(model=model, out=tmp_path / "out", image=image) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.pt" in err and "refused" in err and "Traceback" not in err
    assert not target.exists()


def test_no_bare_image_open_in_the_library():
    """Every image is opened through data.images (the pixel limit is checked from the header before
    decoding); a bare Image.open elsewhere would decode a decompression bomb in full."""
    from pathlib import Path

    import multibox

    root = Path(multibox.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "images.py" and "Image.open(" in p.read_text(encoding="utf-8")]
    assert offenders == []
