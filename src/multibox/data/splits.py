"""The splits a dataset has, read from its layout without opening it, and the split a command takes when
none is named: `train` and `data check` take ``train`` (else ``trainval``, else the data's one split, e.g.
``all`` for a VOC folder without ImageSets); `evaluate` takes ``test``, else ``val``, else that training split.
"""

from __future__ import annotations

from pathlib import Path

from multibox.data.formats import LABELME_JSON, _yaml_in, detect_format, json_splits
from multibox.data.voc import voc_root, voc_splits
from multibox.data.yolo import load_yaml
from multibox.errors import UserError

SYNTHETIC_SPLITS = ["train", "val", "test"]
YOLO_SPLITS = ("train", "val", "test")
TRAINING_NAMES = ("train", "trainval")  # the training split's usual names, in order of preference
SCORING_NAMES = ("test", "val")  # the scored split's, in order of preference


def dataset_splits(spec: str) -> list[str] | None:
    """The split names the dataset ``spec`` (``--data``) answers to; None when its layout does not say
    (a missing path: opening it reports that)."""
    if spec == "synthetic":
        return list(SYNTHETIC_SPLITS)
    path = Path(spec)
    try:
        kind = detect_format(path)
        if kind == "voc":
            return voc_splits(voc_root(path))
        if kind == "coco":
            return coco_splits(path)
        config = load_yaml(path if path.is_file() else _yaml_in(path))
    except (UserError, OSError):
        return None
    if kind == "yaml":
        named = config.get("splits")
        if isinstance(named, dict) and named:
            return [str(name) for name in named]
        return voc_splits(voc_root(path.parent / str(config.get("root") or "."))) if config.get("format") == "voc" else None
    return [name for name in YOLO_SPLITS if config.get(name)]


def coco_splits(path: Path) -> list[str]:
    """A COCO file's one split ("train" when its name names none), or a COCO folder's instances_<split>.json."""
    if path.is_dir() and not (path / "annotations").is_dir():
        path = path / LABELME_JSON
    if path.is_file():
        names = json_splits(path)
        return ["train"] if "train" in names else [min(names, key=len)]
    return sorted(p.stem.removeprefix("instances_") for p in (path / "annotations").glob("instances_*.json"))


def training_split_name(spec: str) -> str:
    """The split `train` and `data check` take without --split: train, else trainval, else the data's one
    split ("all" for VOC without ImageSets); "train" when the layout does not say (opening it then names
    what there is)."""
    splits = dataset_splits(spec)
    if not splits:
        return "train"
    for name in (*TRAINING_NAMES, "all"):
        if name in splits:
            return name
    return splits[0] if len(splits) == 1 else "train"


def scoring_split_name(spec: str) -> str:
    """The split `evaluate` scores without --split: test, else val, else :func:`training_split_name`."""
    splits = dataset_splits(spec)
    if splits is None:
        return "test"
    return next((name for name in SCORING_NAMES if name in splits), training_split_name(spec))


def has_held_out_split(spec: str) -> bool:
    """Whether the data has a split apart from the one trained on (a test or val split), as far as its
    layout says (True when it does not say)."""
    splits = dataset_splits(spec)
    return splits is None or any(name in splits for name in SCORING_NAMES)
