"""Typed run configuration: dataclasses loadable from YAML, overridable from the CLI, saved with every run.

Precedence: defaults < ``--config YAML`` < command-line flags. The resolved config is written to
``RUN_DIR/config.yaml`` and stored in every checkpoint, so a checkpoint alone can rebuild its model.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multibox.atomic import write_text_atomic
from multibox.errors import UserError
from multibox.yaml_files import read_yaml

# The choice lists, each written once: the parser's choices, the config checks and the code use these.
BACKBONES = ("alexnet", "resnet18", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_lite0", "efficientnet_lite1",
             "efficientnet_lite2", "tiny")
OPTIMIZERS = ("adagrad", "sgd", "adam")  # §4.1 trains with Adagrad
AMP_MODES = ("auto", "bf16", "fp16", "off")
CROPS = ("auto", "coverage", "max_square")  # training crops (§4.1 coverage buckets, or the maximal square)
CLASSIFIER_REGIONS = ("max", "min")  # square around a box: §4.2.2 max, §4.4.1 min
DETECTOR_MODES = ("voc", "ilsvrc")  # §4.2.2 (NMS 0.5, every class) and §4.4.1 (NMS 0.4, best box per class)
EXPORT_FORMATS = ("onnx", "torchscript")
RUNTIMES = ("onnxruntime", "openvino")  # what runs an exported .onnx (`detect --runtime`)
MODEL_KINDS = ("localizer", "one-box-per-class")  # what `train` trains: DeepMultiBox, or §4.4.2's competitor
WINDOW_MODES = ("whole", "center", "multiscale", "tiles")  # what the localizer looks at: the padded image, §4.1, §4.3, tiles
TTA_MODES = ("flip", "dihedral")  # test-time augmentation: + the mirror image; + the mirrors and 90-degree rotations
SELECT_RANKINGS = ("disagreement", "uncertainty")  # `multibox select --by`: image vs mirror boxes; scores near 0.5
BASELINES = ("priors", "sliding-window", "random", "selective-search")  # proposal baselines of `evaluate`

# config field -> its choice list, checked by :func:`check_choices`.
CHOICE_FIELDS = {("model", "kind"): MODEL_KINDS,
                 ("model", "backbone"): BACKBONES, ("model", "windows"): WINDOW_MODES, ("model", "head"): ("conv", "fc"),
                 ("model", "conv_head"): ("dense", "separable"), ("model", "feature_norm"): ("dataset", "image"), ("train", "box_loss"): ("image", "box"),
                 ("train", "schedule"): ("cosine", "constant"),
                 ("model", "classifier_region"): CLASSIFIER_REGIONS,
                 ("data", "crop"): CROPS, ("train", "optimizer"): OPTIMIZERS, ("train", "amp"): AMP_MODES}


@dataclass
class ModelConfig:
    backbone: str = "efficientnet_lite0"  # feature extractor, one of BACKBONES (ImageNet weights shipped offline; §4.1 used AlexNet)
    weights: str | None = None  # backbone init: None (random; packaged ImageNet for efficientnet_lite0), "imagenet", or a .pth path
    kind: str = "localizer"  # one of MODEL_KINDS: the DeepMultiBox localizer, or one box per class (§4.4.2, Table 2)
    head: str = "conv"  # "conv": priors tied to feature-map cells (translation-invariant); "fc": the paper's §3 head
    num_boxes: int = 100  # K of the fc head, predicted boxes per image (§3: 100 or 200); the conv head has (S/stride)^2 x A
    image_size: int | None = None  # S, the square network input (§4.2.2: 220); None: chosen from the data's box sizes
    hidden_dim: int = 1024  # width of the last hidden layer feeding the two outputs (0: use backbone features directly)
    grid: int = 4  # spatial grid the backbone's feature map is pooled to before the fully connected head
    shapes_per_cell: int = 4  # conv head: A prior shapes per cell, from k-means on the training boxes' sizes
    stride: int | None = None  # conv head: the feature map's stride in input pixels (8 or 16); None: from the data (engine.tasks.auto_geometry)
    levels: list[int] | None = None  # conv head: backbone strides fused into the map (None: the map's stride and the next finer one)
    conv_hidden: int = 256  # conv head: channels of its 3x3 convolutions
    conv_depth: int = 3  # conv head: number of 3x3 convolutions
    feature_dropout: float = 0.5  # conv head: share of the head's input channels dropped while training (whole channels; the default run on small data grows with it, engine.tasks.cached_steps; 0: off)
    feature_norm: str = "dataset"  # conv head: standardize features with the training maps' statistics ("dataset") or each image's own ("image")
    conv_head: str = "separable"  # conv head: "separable" (depthwise 3x3 + 1x1: ~10x fewer FLOPs than "dense" 3x3 convolutions)
    windows: str = "whole"  # what the localizer looks at in an image, one of WINDOW_MODES ("center": §4.1, the paper's)
    nms_iou: float | None = None  # NMS overlap threshold of the localizer's boxes (§4.1: 0.5); None: from the training boxes (engine.nms_rule)
    classifier_region: str = "max"  # classifier input around a box: "max" (§4.2.2) or "min" (§4.4.1) square, see multibox.data.regions


@dataclass
class DataConfig:
    data: str = "synthetic"  # dataset: "synthetic" or a dataset path / YAML
    split: str = "train"  # training split
    val_split: str = "val"  # split scored at each checkpoint to keep the best weights (RUN/best.pt)
    holdout: float = 0.1  # when the data has no val_split: this share of the training images is held out for it (§4.4.1)
    val_images: int = 200  # at most this many validation images are scored at a checkpoint
    synthetic_sizes: dict[str, int] = field(default_factory=lambda: {"train": 4000, "val": 300, "test": 300})  # images per synthetic split
    synthetic_image_size: int = 160  # side of the generated square images, pixels
    synthetic_seed: int = 0  # seed of the generated dataset (fixed splits)
    synthetic_preload: bool = False  # render the training split once into memory (fast epochs, N*S*S*3 bytes)
    crop: str = "auto"  # training crop: "coverage" (§4.1 buckets), "max_square" (random maximal square), "auto" (coverage; max_square on synthetic)
    flip: bool = True  # random horizontal flip
    rotate: bool = True  # cached features: also the 90-degree rotations (objects at any of 4 orientations; off where "up" matters)
    cache_scales: list[float] = field(default_factory=lambda: [0.6, 0.8, 1.0, 1.25, 1.5])  # cached features: input sizes, x S
    cache_jitter: float = 1.0  # cached features: photometric jitter strength of each cached view (0: off), multibox.data.photometric
    cache_gray: float = 0.5  # cached features: share of the jittered views turned grey (dead crowns, other seasons; docs/quality.md)
    num_workers: int = 2  # DataLoader worker processes (0: load in the training process)
    exclude_classes: list[str] = field(default_factory=list)  # §4.4.2 unseen classes: training images holding them are dropped
    negatives_per_positive: float = 2.0  # classifier crops: background crops per object crop (§4.2.1: 20 M to 10 M)


@dataclass
class TrainConfig:
    optimizer: str = "adam"  # "adam" (AdamW), "adagrad" (§4.1) or "sgd"
    lr: float = 0.001  # peak learning rate
    weight_decay: float = 0.0001  # L2 penalty (AdamW: decoupled)
    warmup_steps: int = 100  # linear learning-rate warmup
    schedule: str = "cosine"  # after warmup: "cosine" decay to 0 at the stop rule's end, or "constant"
    cache_features: bool = True  # conv head: freeze the backbone, compute its features once per image and
    # augmentation, and train the head on windows of the cached maps (a crop of the image is a window of the map)
    window_cells: int = 16  # cached features: training windows of this many cells a side
    tune_backbone: bool = False  # cached features: also train the backbone after its finest tap (partial fine-tuning; the cache holds that tap's maps)
    backbone_lr: float = 0.1  # tuned backbone layers learn at train.lr x this
    cache_memory_gb: float = 3.0  # cached features: maps held in memory per process up to this; the rest spill to disk
    cache_dir: str | None = None  # cached features: folder for spilled maps (None: the system temp dir; removed after the run)
    batch_size: int = 8  # images (or cached-feature windows) per step (§4.1: 128)
    steps: int | None = None  # stop after this many steps (None with cached features: a length from the data size)
    epochs: float | None = None  # or after this many passes over the training split
    time_minutes: float | None = None  # or when this wall-clock budget is spent (checkpoint saved)
    seed: int = 0  # seeds init, data order and augmentation
    device: str = "auto"  # "cpu", "cuda", or "auto" (cuda when available)
    alpha: float = 1.0  # Eq. 3 weight of the location term (§4.1: 0.3, with box_loss "image")
    box_loss: str = "box"  # location term: "image" (Eq. 1, squared error in image fractions) or "box" (smooth L1 in ground-truth sizes)
    positive_iou: float | None = 0.5  # predictions over this IoU with a ground truth are positives too (None: §3's assignment alone)
    prior_matching: bool = True  # match ground truth to priors, not predictions (§3; found essential)
    log_every: int = 10  # steps between log lines in RUN_DIR/log.jsonl
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    grad_clip: float | None = 10.0  # max gradient norm, None to disable
    amp: str = "auto"  # mixed precision: "auto" (CUDA: bf16 where supported, else fp16; CPU: off), "bf16", "fp16" (with loss scaling) or "off"
    channels_last: bool | None = None  # NHWC memory layout for images and conv weights (faster tensor-core convolutions); None: on CUDA only
    compile: bool = False  # torch.compile the model (the first steps are slower while it compiles)
    sync_bn: bool = True  # distributed: batch norm over the global batch, so W processes x batch B train like 1 x W*B
    cuda_workers: int = 8  # on CUDA, DataLoader workers per process are at least this (capped at CPU cores / processes on the node): a GPU step outruns data.num_workers' CPU-sized default


# Presets: "default" is the dataclasses' values; "paper" is §4.1's network and training (AlexNet,
# fully connected head, 220 x 220, center crop, Adagrad), the configuration of the paper's experiments.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "paper": {"model": {"backbone": "alexnet", "head": "fc", "image_size": 220, "windows": "center", "nms_iou": 0.5},
              "data": {"rotate": False},
              "train": {"optimizer": "adagrad", "lr": 0.01, "batch_size": 32, "weight_decay": 0.0, "warmup_steps": 0,
                        "schedule": "constant", "cache_features": False, "alpha": 0.3, "box_loss": "image",
                        "positive_iou": None}},
}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def preset(cls, name: str) -> Config:
        """The config of a named preset (PRESETS): "default" or "paper"."""
        if name not in PRESETS:
            raise UserError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
        return cls.from_dict(PRESETS[name], f"preset {name}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config", base: Config | None = None) -> Config:
        """Build from nested dicts over ``base`` (default: the defaults); unknown sections or keys are an
        error naming them."""
        cfg = copy.deepcopy(base) if base is not None else cls()
        if not isinstance(raw or {}, dict):
            raise UserError(f"{source}: expected a mapping of sections (model, data, train), got a {type(raw).__name__}")
        for section, values in (raw or {}).items():
            if section not in {"model", "data", "train"}:
                raise UserError(f"{source}: unknown section {section!r}{closest(str(section), ('model', 'data', 'train'))} "
                                "(expected model, data, train)")
            if not isinstance(values, dict):
                raise UserError(f"{source}: section {section!r} must be a mapping")
            set_fields(getattr(cfg, section), values, f"{source}: {section}")
        check_values(cfg, source)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, base: Config | None = None) -> Config:
        """The config file ``path`` over ``base``: read by :func:`multibox.yaml_files.read_yaml` (alias
        bombs, non-UTF-8 bytes, a top-level non-mapping refused) and checked by :func:`check_values`."""
        return cls.from_dict(read_yaml(path, mapping=True), str(path), base)

    def save_yaml(self, path: str | Path) -> None:
        """Write the config as YAML, atomically (a failure leaves no partial file)."""
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def set_fields(obj: Any, values: dict[str, Any], where: str) -> None:
    """Set dataclass fields from a dict, rejecting unknown names."""
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise UserError(f"{where}: unknown key {key!r}{closest(str(key), names)} (known: {', '.join(sorted(names))})")
        setattr(obj, key, value)


def closest(word: str, names: typing.Iterable[str]) -> str:
    """" (did you mean 'batch_size'?)" for the name nearest ``word`` (difflib), or ""."""
    found = difflib.get_close_matches(word, list(names), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def check_choices(cfg: Config) -> None:
    """Every choice field of ``cfg`` holds one of its names (a UserError naming the config key)."""
    for (section, name), choices in CHOICE_FIELDS.items():
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise UserError(f"{section}.{name} {value!r}: unknown {name.replace('_', ' ')} (choose from {', '.join(choices)})")


# --- value checks: types from the dataclass annotations, ranges below ---------------------------------


@dataclass(frozen=True)
class Range:
    """Allowed values of a number field (of each element for a list or dict field): low <= v <= high,
    or low < v when ``open_low``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def holds(self, value: float) -> bool:
        """True when ``value`` lies in the range."""
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def describe(self, noun: str) -> str:
        """The range in words for a ``noun`` ("integer", "number"): "a positive integer", "a number in [0, 0.9]"."""
        if self.high is None and self.low == 0:
            return f"a positive {noun}" if self.open_low else f"a non-negative {noun}"
        if self.high is None and self.low == 1 and noun == "integer":
            return "a positive integer"
        if self.high is None:
            return f"{'an' if noun == 'integer' else 'a'} {noun} {'>' if self.open_low else '>='} {self.low:g}"
        return f"{'an' if noun == 'integer' else 'a'} {noun} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"


POSITIVE, NON_NEGATIVE, ABOVE_ZERO = Range(1), Range(0), Range(0, open_low=True)
#: The smallest input side: the backbones downsample by up to 32 (AlexNet, ResNet; the conv head's map by
#: model.stride); the largest: beyond it one image's activations no longer fit a GPU.
IMAGE_SIZE = Range(32, 4096)
FIELD_RANGES: dict[tuple[str, str], Range] = {
    ("model", "num_boxes"): POSITIVE, ("model", "image_size"): IMAGE_SIZE, ("model", "hidden_dim"): NON_NEGATIVE,
    ("model", "grid"): POSITIVE, ("model", "shapes_per_cell"): POSITIVE, ("model", "stride"): Range(2, 64),
    ("model", "levels"): Range(2, 64), ("model", "conv_hidden"): POSITIVE, ("model", "conv_depth"): POSITIVE, ("model", "feature_dropout"): Range(0, 0.9),
    ("model", "nms_iou"): Range(0, 1, open_low=True),
    ("data", "holdout"): Range(0, 0.9), ("data", "val_images"): NON_NEGATIVE, ("data", "synthetic_sizes"): NON_NEGATIVE,
    ("data", "synthetic_image_size"): Range(16, 4096), ("data", "synthetic_seed"): NON_NEGATIVE,
    ("data", "cache_scales"): ABOVE_ZERO, ("data", "num_workers"): NON_NEGATIVE,
    ("data", "negatives_per_positive"): NON_NEGATIVE, ("data", "cache_jitter"): Range(0, 1), ("data", "cache_gray"): Range(0, 1),
    ("train", "positive_iou"): Range(0, 1, open_low=True),
    ("train", "lr"): ABOVE_ZERO, ("train", "weight_decay"): NON_NEGATIVE, ("train", "warmup_steps"): NON_NEGATIVE,
    ("train", "window_cells"): POSITIVE, ("train", "batch_size"): POSITIVE, ("train", "steps"): POSITIVE,
    ("train", "cache_memory_gb"): NON_NEGATIVE, ("train", "backbone_lr"): NON_NEGATIVE,
    ("train", "epochs"): ABOVE_ZERO, ("train", "time_minutes"): ABOVE_ZERO, ("train", "seed"): NON_NEGATIVE,
    ("train", "alpha"): NON_NEGATIVE, ("train", "log_every"): POSITIVE, ("train", "checkpoint_every"): POSITIVE,
    ("train", "grad_clip"): ABOVE_ZERO, ("train", "cuda_workers"): NON_NEGATIVE,
}
_NOUNS = {int: "integer", float: "number", str: "string", bool: "true or false"}


YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # 1e-3, 5E4: numbers to YAML 1.2, strings to 1.1


class _Mismatch(Exception):
    """A value does not have its field's type."""


def _union_args(hint: Any) -> tuple | None:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else None


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the annotation ``hint`` takes it (int -> float, tuple -> list); _Mismatch if it is not."""
    options = _union_args(hint)
    if options is not None:
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option)
            except _Mismatch:
                pass
        raise _Mismatch
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if hint is float and isinstance(value, str) and YAML11_FLOAT.fullmatch(value.strip()):
        return float(value)  # `lr: 1e-3`: YAML 1.1 reads an exponent without a dot as a string; the user meant 0.001
    if hint is str and isinstance(value, str):
        return value
    if origin is list and isinstance(value, (list, tuple)):
        return [_coerce(v, args[0]) for v in value]
    if origin is dict and isinstance(value, dict):
        return {_coerce(k, args[0]): _coerce(v, args[1]) for k, v in value.items()}
    raise _Mismatch


def _describe(hint: Any, limits: Range | None) -> str:
    """What a field takes, in words: "a positive integer", "a list of numbers", "a string or null"."""
    options = _union_args(hint)
    if options is not None:
        words = [_describe(o, limits) for o in options if o is not type(None)]
        return " or ".join(words + (["null"] if type(None) in options else []))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return f"a list of {_plural(_describe(args[0], limits))}"
    if origin is dict:
        return f"a mapping of {_plural(_describe(args[0], None))} to {_plural(_describe(args[1], limits))}"
    noun = _NOUNS.get(hint, getattr(hint, "__name__", str(hint)))
    if limits is not None and hint in (int, float):
        return limits.describe(noun)
    return {"true or false": "true or false", "integer": "an integer"}.get(noun, f"a {noun}")


def _plural(words: str) -> str:
    for article in ("an ", "a "):
        if words.startswith(article):
            return words[len(article):] + "s"
    return words


def _numbers(value: Any) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [] if value is None else [value]


def _device(value: Any) -> Any:
    """train.device given as a GPU number (YAML ``device: 0``, the flag ``--device 0``) means "cuda:N",
    as in PyTorch and Ultralytics; other values are left to the device check."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return f"cuda:{value}"
    if isinstance(value, str) and value.strip().isdigit():
        return f"cuda:{int(value)}"
    return value


def _check_field(section: Any, section_name: str, name: str, hint: Any, source: str) -> None:
    """Coerce and range-check one field of ``section`` in place; a UserError naming SOURCE: SECTION.NAME."""
    value = getattr(section, name)
    limits = FIELD_RANGES.get((section_name, name))
    try:
        coerced = _coerce(value, hint)
        if limits is not None and not all(limits.holds(v) for v in _numbers(coerced)):
            raise _Mismatch
    except _Mismatch:
        raise UserError(f"{source}: {section_name}.{name}: expected {_describe(hint, limits)}, got {value!r}") from None
    setattr(section, name, coerced)


def check_values(cfg: Config, source: str = "config") -> None:
    """Every field of ``cfg`` has its annotated type (ints where ints are annotated, finite numbers,
    strings...), lies in its :data:`FIELD_RANGES` range and, for choice fields, is one of
    :data:`CHOICE_FIELDS`' names; a one-line UserError "SOURCE: train.batch_size: expected a positive
    integer, got '32'" otherwise. Values are normalized in place: an int where a float is annotated
    becomes a float, a tuple a list, and train.device N (an int or digits) becomes "cuda:N".

    Called when a config is loaded (:meth:`Config.from_dict`, :meth:`Config.from_yaml`) and again after
    command-line overrides, before any data is read.
    """
    cfg.train.device = _device(cfg.train.device)
    for section_name in ("model", "data", "train"):
        section = getattr(cfg, section_name)
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            _check_field(section, section_name, f.name, hints[f.name], source)
    for (section_name, name), choices in CHOICE_FIELDS.items():
        value = getattr(getattr(cfg, section_name), name)
        if value not in choices:
            raise UserError(f"{source}: {section_name}.{name}: unknown {name.replace('_', ' ')} {value!r} "
                            f"(choose from {', '.join(choices)})")
