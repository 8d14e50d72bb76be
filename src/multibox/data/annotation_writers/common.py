"""What every annotation writer needs: class per box, an image placed in a dataset folder atomically."""

from __future__ import annotations

from pathlib import Path

from multibox.atomic import write_bytes_atomic

__all__ = ["box_classes", "place_image"]


def box_classes(entry: dict, class_names: list[str]) -> list[tuple[int, str]]:
    """(class index, class name) per box: the classifier's labels when the entry has them, else class 0."""
    count = len(entry["boxes"])
    if "labels" not in entry:
        return [(0, class_names[0])] * count
    ids = entry.get("label_ids") or [class_names.index(n) if n in class_names else 0 for n in entry["labels"]]
    return [(int(i), str(n)) for i, n in zip(ids, entry["labels"])]


def place_image(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically (a copy, not a link: the dataset folder must stay valid
    when the photos move, and the tools may rewrite their images)."""
    if target.exists() and target.samefile(source):
        return
    write_bytes_atomic(target, Path(source).read_bytes())
