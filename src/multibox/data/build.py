"""Opening datasets: by the name ``--data`` gives (:func:`build_dataset`), or as the split a config names
(:func:`load_split`; the training split without §4.4.2's excluded classes)."""

from __future__ import annotations

from multibox.config import Config
from multibox.data.dataset import DetectionDataset
from multibox.data.subset import ImageSubset, split_holdout
from multibox.data.unseen import without_classes
from multibox.errors import UserError


def build_dataset(spec: str, split: str = "train", **options) -> DetectionDataset:
    """The dataset named by ``spec`` (``--data``): ``synthetic``, or a dataset YAML, COCO JSON or dataset
    folder (VOC, COCO, YOLO; see :mod:`multibox.data.formats`).

    ``options`` go to the dataset's constructor (e.g. the synthetic split sizes; for files: names, cache,
    cache_dir, probe_images, max_pixels, problems -- see :class:`multibox.data.file_dataset.FileDataset`).
    Raises :class:`~multibox.errors.UserError` for a missing root, split or unrecognised format.
    """
    if spec == "synthetic":
        from multibox.data.synthetic import SyntheticDataset

        return SyntheticDataset(split=split, **options)
    from multibox.data.formats import open_dataset

    return open_dataset(spec, split, **options)


def load_split(cfg: Config, split: str, data: str | None = None) -> DetectionDataset:
    """The dataset split named by the config (``data`` overrides cfg.data.data)."""
    spec = data or cfg.data.data
    options = {}
    if spec == "synthetic":
        options = {"size": cfg.data.synthetic_sizes.get(split), "image_size": cfg.data.synthetic_image_size,
                   "seed": cfg.data.synthetic_seed, "preload": cfg.data.synthetic_preload and split == cfg.data.split}
    return build_dataset(spec, split, **options)


def has_split(cfg: Config, split: str) -> bool:
    """Whether the configured dataset has ``split``."""
    try:
        load_split(cfg, split)
    except UserError:
        return False
    return True


def holds_out(cfg: Config) -> bool:
    """Whether validation images come out of the training split: the data has no cfg.data.val_split, or it
    is the training split itself (one COCO file named instances_val2017.json trains on "val": best.pt is not
    chosen on the images it was trained on)."""
    d = cfg.data
    return d.holdout > 0 and (d.val_split == d.split or not has_split(cfg, d.val_split))


def training_split(cfg: Config) -> DetectionDataset:
    """The training split without the images of cfg.data.exclude_classes (§4.4.2, :mod:`multibox.data.unseen`)
    and without the images held out for validation (:func:`holds_out`)."""
    dataset = without_classes(load_split(cfg, cfg.data.split), list(cfg.data.exclude_classes))
    return split_holdout(dataset, cfg.data.holdout, cfg.train.seed)[0] if holds_out(cfg) else dataset


def validation_split(cfg: Config) -> DetectionDataset | None:
    """The images scored at checkpoints: cfg.data.val_split, or those held out of the training split;
    None when there are none (a tiny dataset without a val split)."""
    if not holds_out(cfg):
        return load_split(cfg, cfg.data.val_split) if has_split(cfg, cfg.data.val_split) else None
    dataset = without_classes(load_split(cfg, cfg.data.split), list(cfg.data.exclude_classes))
    held = split_holdout(dataset, cfg.data.holdout, cfg.train.seed)[1]
    return held if len(held) else None


def validation_images(cfg: Config) -> DetectionDataset | None:
    """:func:`validation_split`'s first cfg.data.val_images images: what best.pt is chosen on at each
    checkpoint and what its scores are calibrated on after training."""
    dataset = validation_split(cfg)
    if dataset is None or len(dataset) <= cfg.data.val_images:
        return dataset
    return ImageSubset(dataset, list(range(cfg.data.val_images)), f"{dataset.name} (first {cfg.data.val_images})")
