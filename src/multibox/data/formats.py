"""What ``--data PATH`` names: a dataset YAML, a COCO JSON, or a folder whose format is recognised.

Accepted:

* a **dataset YAML** of ours::

      format: voc            # voc | coco | yolo
      root: VOCdevkit/VOC2012  # relative to this file; default: its folder
      splits:                # optional for voc (default: ImageSets/Main names)
        train: trainval      # voc: ImageSets name; yolo: folder / .txt / list;
        val: val             # coco: JSON path, or {annotations: JSON, images: folder}
      names: [...]           # optional: fixes the class order
      options: {probe_images: false}  # optional reader options

* an **Ultralytics data YAML** (``path``, ``train``/``val``/``test``, ``names``; no ``format`` key);
* a **COCO JSON** file: one split, the one its name gives (``instances_val2017.json``: ``val2017`` or
  ``val``; a name giving none, like ``annotations.json``: ``train``); another split is an error;
* a **folder**: VOC (``Annotations/``, or a VOCdevkit with one VOC20xx), COCO
  (``annotations/instances_<split>.json``; split ``train`` also finds ``instances_train2017.json``),
  labelme2coco's output (``annotations.json`` at the top, images beside it or in ``JPEGImages/``),
  or YOLO (a ``data.yaml``/``dataset.yaml`` or single ``*.yaml`` inside).
"""

from __future__ import annotations

from pathlib import Path

from multibox.data.coco import COCODataset
from multibox.data.file_dataset import FileDataset
from multibox.data.voc import VOCDataset, voc_root
from multibox.data.yolo import YOLODataset, load_yaml, yolo_names
from multibox.errors import UserError

__all__ = ["open_dataset", "detect_format"]

_FORMATS = ("voc", "coco", "yolo")
LABELME_JSON = "annotations.json"  # what labelme2coco writes at the top of its output folder
#: Split words a COCO JSON's name may carry (instances_val2017.json is "val2017", so "val" too).
_SPLIT_WORDS = {"train", "val", "test", "trainval", "minival", "valminusminival", "test-dev", "valid", "validation"}


#: The folder layouts :func:`detect_format` recognises, in the order it tries them (for its error message).
LAYOUTS = (
    "VOC: Annotations/ (or a VOCdevkit folder with one VOC20xx/Annotations/)",
    "COCO: annotations/instances_<split>.json",
    "labelme2coco: annotations.json (images beside it or in JPEGImages/)",
    "YOLO: data.yaml, dataset.yaml or a single *.yaml",
)


def detect_format(path: str | Path) -> str:
    """ "voc", "coco", "yolo" or "yaml" (our dataset YAML) for ``path``; UserError if unrecognised."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_file():
        return _file_format(path)
    if (path / "Annotations").is_dir() or any((c / "Annotations").is_dir() for c in path.iterdir() if c.is_dir()):
        return "voc"
    if list((path / "annotations").glob("instances_*.json")) or (path / LABELME_JSON).is_file():
        return "coco"
    if _yaml_in(path) is not None:
        return "yolo"
    raise UserError(f"{path}: not a VOC, COCO or YOLO dataset folder; looked for " + "; ".join(LAYOUTS))


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix in (".yaml", ".yml"):
        return "yaml" if "format" in load_yaml(path) else "yolo"
    raise UserError(f"{path}: expected a dataset YAML, a COCO JSON or a dataset folder")


def _yaml_in(folder: Path) -> Path | None:
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.yaml"))
    return found[0] if len(found) == 1 else None


def json_splits(path: Path) -> set[str]:
    """The split names one COCO JSON answers to: its stem, without ``instances_``, without a year
    (``instances_val2017.json``: val2017, val). A name naming no split (``annotations.json``, as
    labelme2coco writes) is the one split there is: "train" (and "all")."""
    base = path.stem.removeprefix("instances_")
    names = {path.stem, base, base.rstrip("0123456789")}
    if not {n.lower() for n in names} & _SPLIT_WORDS:
        names |= {"train", "all"}
    return names


def _check_json_split(path: Path, split: str) -> None:
    """A single COCO JSON holds one split: a ``split`` it does not name is an error, never the whole file."""
    names = json_splits(path)
    if split not in names:
        ours = "train" if "train" in names and "all" in names else min(names, key=len)
        why = "its name names no split" if "all" in names else f"from its name; also {', '.join(sorted(names - {ours}))}"
        raise UserError(f"{path}: one COCO file is one split, '{ours}' ({why}), not '{split}'; "
                        "for several splits use a dataset YAML (format: coco, splits: {...})")


def _coco_in_folder(folder: Path, split: str) -> Path:
    """annotations/instances_<split>.json, or the single instances_<split>*.json (train -> train2017);
    in a labelme2coco folder, its annotations.json."""
    if not (folder / "annotations").is_dir() and (folder / LABELME_JSON).is_file():
        return folder / LABELME_JSON
    exact = folder / "annotations" / f"instances_{split}.json"
    if exact.is_file():
        return exact
    found = sorted((folder / "annotations").glob(f"instances_{split}*.json"))
    if len(found) == 1:
        return found[0]
    available = ", ".join(
        p.stem[len("instances_") :] for p in sorted((folder / "annotations").glob("instances_*.json"))
    )
    raise UserError(f"{folder}: no COCO split '{split}' (annotations/instances_<split>.json; found: {available})")


def open_dataset(spec: str | Path, split: str = "train", **options) -> FileDataset:
    """The ``split`` of the dataset at ``spec`` (see the module docstring). Options go to the reader."""
    path = Path(spec)
    kind = detect_format(path)
    if kind == "yaml":
        return _from_our_yaml(path, split, options)
    if kind == "voc":
        return VOCDataset(path, split, **options)
    if kind == "coco":
        json_path = path if path.is_file() else _coco_in_folder(path, split)
        if json_path.name == LABELME_JSON or path.is_file():
            _check_json_split(json_path, split)
        return COCODataset(json_path, split=split, **options)
    yaml_path = path if path.is_file() else _yaml_in(path)
    return YOLODataset.from_yaml(yaml_path, split, **options)


def _from_our_yaml(path: Path, split: str, options: dict) -> FileDataset:
    spec = load_yaml(path)
    fmt = str(spec.get("format", "")).lower()
    if fmt not in _FORMATS:
        raise UserError(f"{path}: 'format' must be one of {', '.join(_FORMATS)}, got {spec.get('format')!r}")
    root = (path.parent / str(spec.get("root") or ".")).resolve()
    splits = spec.get("splits") or {}
    if not isinstance(splits, dict):
        raise UserError(f"{path}: 'splits' must map split names to their files")
    options = {**_yaml_options(spec.get("options"), path), **options}
    if spec.get("names") is not None and options.get("names") is None:
        options["names"] = yolo_names(spec["names"], str(path))
    if fmt == "voc":
        return VOCDataset(voc_root(root), str(splits.get(split, split)), **options)
    if split not in splits:
        raise UserError(f"{path}: no split '{split}' (splits: {', '.join(map(str, splits)) or 'none'})")
    if fmt == "coco":
        return _coco_split(path, root, split, splits[split], options)
    config = {"path": str(root), split: splits[split]}
    return YOLODataset(config, split, base_dir=path.parent, source=path, **options)


#: Reader options a dataset YAML's ``options`` may set, and the type each needs.
_OPTION_TYPES = {"probe_images": bool, "cache": bool, "max_pixels": int}


def _yaml_options(options, path: Path) -> dict:
    """A dataset YAML's ``options`` mapping, each key known and of its type; else a UserError naming it."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise UserError(f"{path}: 'options' must be a mapping (e.g. probe_images: false)")
    for key, value in options.items():
        kind = _OPTION_TYPES.get(key)
        if kind is None:
            raise UserError(f"{path}: options.{key}: unknown reader option (known: {', '.join(_OPTION_TYPES)})")
        if type(value) is not kind or (kind is int and value <= 0):
            wanted = "true or false" if kind is bool else "a positive integer"
            raise UserError(f"{path}: options.{key}: expected {wanted}, got {value!r}")
    return dict(options)


def _coco_split(path: Path, root: Path, split: str, entry, options: dict) -> COCODataset:
    if isinstance(entry, dict):
        if "annotations" not in entry:
            raise UserError(f"{path}: split '{split}' needs 'annotations' (and optionally 'images')")
        images = root / str(entry["images"]) if entry.get("images") else None
        return COCODataset(root / str(entry["annotations"]), images, split=split, **options)
    return COCODataset(root / str(entry), split=split, **options)
