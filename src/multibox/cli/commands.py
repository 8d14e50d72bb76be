"""The handlers of `multibox` commands: each maps its parsed flags to one call of :mod:`multibox.jobs`
(imported when the command runs, so `multibox --help` stays fast)."""

from __future__ import annotations

import argparse
import os
import sys

from multibox.config import Config, check_values
from multibox.engine.run_dir import NothingToResume, RunFolderInUse
from multibox.errors import UserError

# flag -> (config section, field): CLI values override the YAML, which overrides the defaults.
TRAIN_FLAGS = {
    "data": ("data", "data"), "split": ("data", "split"), "backbone": ("model", "backbone"),
    "weights": ("model", "weights"), "num_boxes": ("model", "num_boxes"), "image_size": ("model", "image_size"),
    "batch_size": ("train", "batch_size"), "lr": ("train", "lr"), "optimizer": ("train", "optimizer"),
    "device": ("train", "device"), "seed": ("train", "seed"), "steps": ("train", "steps"),
    "epochs": ("train", "epochs"), "time": ("train", "time_minutes"), "workers": ("data", "num_workers"),
    "alpha": ("train", "alpha"), "checkpoint_every": ("train", "checkpoint_every"), "amp": ("train", "amp"),
    "channels_last": ("train", "channels_last"), "compile": ("train", "compile"), "sync_bn": ("train", "sync_bn"),
    "exclude_classes": ("data", "exclude_classes"), "region": ("model", "classifier_region"),
    "negatives_per_positive": ("data", "negatives_per_positive"), "kind": ("model", "kind"),
}


def given_settings(args: argparse.Namespace) -> dict[str, object]:
    """The config keys ("section.field") the flags of TRAIN_FLAGS set on this command line."""
    given = {f"{section}.{name}": getattr(args, flag) for flag, (section, name) in TRAIN_FLAGS.items()
             if getattr(args, flag, None) is not None}
    return given | ({"train.prior_matching": False} if getattr(args, "no_prior_matching", False) else {})


def train_config(args: argparse.Namespace) -> Config:
    """The --preset (default: "default") < --config YAML < the flags of TRAIN_FLAGS that were given."""
    cfg = Config.preset(getattr(args, "preset", None) or "default")
    cfg = Config.from_yaml(args.config, cfg) if getattr(args, "config", None) else cfg
    for key, value in given_settings(args).items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    if getattr(args, "split", "given") is None and cfg.data.split == "train":  # data with one split: that one
        from multibox.data.splits import training_split_name

        cfg.data.split = training_split_name(cfg.data.data)
    check_values(cfg, "command line")
    return cfg


def window_args(args: argparse.Namespace) -> dict:
    """--windows / --tile / --overlap as the jobs' keywords (--tile alone means tiles)."""
    windows = args.windows or ("tiles" if args.tile else None)
    if windows == "tiles" and not args.tile:
        raise UserError("--windows tiles needs --tile PIXELS")
    return {"windows": windows, "tile": args.tile, "overlap": args.overlap, "tta": args.tta}


def data_config(args: argparse.Namespace) -> Config | None:
    return Config.from_yaml(args.config) if args.config else None


def cmd_train(args: argparse.Namespace) -> int:
    from multibox.jobs.train import train, train_classifier
    from multibox.reports.terminal import print_run_files

    if args.resume and (args.config or args.preset):
        raise UserError("--resume continues a run with the settings it was started with; drop --config/--preset")
    if args.resume and args.out is None:
        raise UserError("--resume continues the run in --out: give --out RUN, or drop --resume to start a new run")
    job = train_classifier if args.command == "train-classifier" else train
    cfg = train_config(args)
    try:
        path = job(cfg, args.out, args.resume, args.exist_ok, given_settings(args) if args.resume else None)
    except (RunFolderInUse, NothingToResume) as exc:  # the library names no flags; say which one does what
        raise UserError(f"{str(exc).split(';')[0]}; {FOLDER_HINTS[type(exc).__name__]}") from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank returns here; one line is enough
        kind = "classifier" if args.command == "train-classifier" else getattr(args, "kind", None) or "localizer"
        print_run_files(path.parent, args.data, kind)
        if kind == "localizer":
            say_one_split(cfg)
    return 0


FOLDER_HINTS = {"RunFolderInUse": "--resume continues it, --exist-ok starts over in it (its files replaced), or "
                                  "choose another --out",
                "NothingToResume": "drop --resume to start a new run there"}


def say_one_split(cfg: Config) -> None:
    """After `train` on data without a test or val split: the next command scores the training split; say so."""
    from multibox.data.splits import has_held_out_split, scoring_split_name

    if not has_held_out_split(cfg.data.data):
        print(f"  (the data has no test or val split: evaluate scores the {scoring_split_name(cfg.data.data)} split, "
              "the images trained on, so its numbers flatter the model; a dataset YAML can name a test split)")


def say_default_split(args: argparse.Namespace, metrics: dict) -> None:
    """Without --split the job scored test, else val, else the training split: say which, as the choice
    changes the numbers."""
    if args.split is None:
        print(f"scored {metrics['dataset']} (no --split: the test split when the data has one, else val, else the "
              "split training takes)")


def cmd_demo(args: argparse.Namespace) -> int:
    from multibox.jobs.demo import DEMO_STEPS, demo
    from multibox.reports.terminal import print_summary

    steps = args.steps or (None if args.time else DEMO_STEPS)
    print_summary(demo(args.out, steps, args.time, args.device, args.multiscale), args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from multibox.engine.run_dir import output_dir
    from multibox.jobs.evaluate import evaluate, evaluate_detections
    from multibox.reports.terminal import print_summary

    args.out = output_dir(args.out, "evaluate")
    if args.detections:
        metrics = evaluate_detections(args.detections, args.out, args.data, args.split, cfg=data_config(args),
                                      baselines=args.baselines or "none", num_boxes=args.num_boxes, seed=args.seed)
    else:
        if args.config:
            raise UserError("--config goes with --detections; a --model brings its own data options")
        metrics = evaluate(args.model, args.out, args.data, args.split, args.device,
                           baselines=args.baselines or "priors", num_boxes=args.num_boxes, seed=args.seed,
                           multiscale=args.multiscale, classes=args.classes, **window_args(args))
    print_summary(metrics, args.out)
    say_default_split(args, metrics)
    if "class_agnostic_pr" in metrics:
        print(f"class-agnostic AP on {', '.join(args.classes)} (other classes ignored): "
              f"{metrics['class_agnostic_pr']['AP']:.3f}")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from multibox.engine.run_dir import output_dir
    from multibox.jobs.baseline import run_baseline
    from multibox.reports.terminal import print_summary

    if args.config and args.model:
        raise UserError("--config and --model both give data options; give one")
    args.out = output_dir(args.out, "baseline")
    metrics = run_baseline(args.name, args.out, args.data, args.split, num_boxes=args.num_boxes or 100,
                           model_path=args.model, seed=args.seed, cfg=data_config(args))
    print_summary(metrics, args.out)
    say_default_split(args, metrics)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from multibox.engine.run_dir import output_dir
    from multibox.jobs.compare import compare
    from multibox.reports.terminal import print_comparison

    names = [n.strip() for n in args.names.split(",")] if args.names else None
    args.out = output_dir(args.out, "compare")
    print_comparison(compare(args.metrics, args.out, names), args.out)
    return 0


def detect_rasters(args: argparse.Namespace) -> bool:
    """With --tile, the named GeoTIFF/TIFF files run window by window (jobs.detect_raster), writing NAME.geojson,
    NAME.json and the map formats of --format (gpkg, shp); the other inputs are left in args.inputs for
    `detect`. True when nothing is left."""
    from multibox.engine.run_dir import output_dir
    from multibox.jobs.detect_raster import VECTOR_FORMATS, detect_raster, is_raster

    rasters = [item for item in args.inputs if is_raster(item)] if args.tile else []
    asked = [f.strip().lower() for f in (args.format or "").split(",") if f.strip()]
    maps, args.format = [f for f in asked if f in VECTOR_FORMATS], ",".join(f for f in asked if f not in VECTOR_FORMATS)
    if not rasters:
        if maps or args.bands:
            given = f"--format {','.join(maps)}" if maps else "--bands"
            raise UserError(f"{given}: only for GeoTIFF/TIFF files with --tile")
        return False
    if args.classifier or args.format or args.save_txt:
        raise UserError("GeoTIFF/TIFF files with --tile give NAME.geojson and NAME.json (and --format gpkg,shp); "
                        "--classifier, --save-txt and the other --format kinds are for images")
    args.out = output_dir(args.out, "detect")
    for raster in rasters:  # one raster at a time: memory is one batch of tiles
        written = detect_raster(args.model, raster, args.out, args.tile, args.overlap, args.bands, args.top_k,
                                args.conf, args.iou, args.max_det, args.device, args.tta, vector_formats=maps,
                                runtime=args.runtime)
        print("; ".join(f"{kind}: {path}" for kind, path in written.items()))
    args.inputs = [item for item in args.inputs if item not in rasters]
    return not args.inputs


def cmd_detect(args: argparse.Namespace) -> int:
    if detect_rasters(args):  # GeoTIFF/TIFF with --tile: window by window; other inputs go on below
        return 0
    from multibox.engine.run_dir import RUNS_ROOT, output_dir
    from multibox.data.annotation_writers import parse_formats
    from multibox.errors import Interrupted
    from multibox.jobs.annotate import annotation_writers, training_class_name
    from multibox.jobs.detect import detect
    from multibox.jobs.detect_log import DetectFolderInUse, latest_run

    formats = parse_formats(args.format)  # a wrong --format fails before any image is read
    flags = {"resume=True": "--resume", "exist_ok=True": "--exist-ok", "(out_dir)": "with --out"}
    writers: list = []  # built once the class names are known; written as the images stream

    def make_writers(class_names: list[str] | None) -> list:
        if not formats and not args.save_txt:  # no annotation files: no second read of the model for a name
            return writers
        names = class_names or training_class_name(args.model)  # the classifier's, else the training data's one class
        writers.extend(annotation_writers(formats, args.save_txt, args.save_conf, out, names, str(args.model)))
        return writers

    try:
        out = latest_run(RUNS_ROOT) if args.resume and args.out is None else output_dir(args.out, "detect")
        path = detect(args.model, args.inputs, out, args.classifier, args.top_k, args.device, args.batch,
                      draw=args.save, multiscale=args.multiscale, mode=args.mode, region=args.region,
                      **window_args(args), min_score=args.conf, iou=args.iou, max_det=args.max_det,
                      draw_conf=args.draw_conf, resume=args.resume, exist_ok=args.exist_ok, writers=make_writers,
                      runtime=args.runtime)
    except DetectFolderInUse as exc:  # the library names its parameters; here they are flags
        message = str(exc)
        for parameter, flag in flags.items():
            message = message.replace(parameter, flag)
        raise UserError(message) from None
    except Interrupted as exc:
        print(f"multibox detect: interrupted ({exc.signal_name}); {exc.step} image(s) kept in {exc.checkpoint}; "
              f"continue with the same command and --resume" + (f" --out {out}" if args.out is None else ""),
              file=sys.stderr)
        return 130
    print(f"detections: {path}")
    for folder in sorted({w.root for w in writers}):
        print(f"annotations: {folder}")
    return 0


def cmd_priors(args: argparse.Namespace) -> int:
    from multibox.jobs.train import priors_job

    print(f"priors: {priors_job(train_config(args), args.out)}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from multibox.jobs.data import check_main, show_main

    from multibox.data.splits import training_split_name

    split = args.split or training_split_name(args.data)
    if args.action == "check":
        return check_main(args.data, split, args.crops_per_image, load_images=not args.no_images,
                          verbose=args.verbose, plots=args.plots)
    show_main(args.data, split, args.out, args.n)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from multibox.engine.run_dir import output_dir
    from multibox.jobs.select import select_images

    doc = select_images(args.model, args.images, output_dir(args.out, "select"), args.n, by=args.by,
                        top_k=args.top_k, threshold=args.threshold, conf=args.conf, formats=args.format,
                        device=args.device)
    print(f"the {len(doc['top'])} image(s) to label next, by {doc['by']} (of {len(doc['images'])} ranked):")
    for row in doc["images"][: len(doc["top"])]:
        print(f"  {row['rank']:>3}. {row['path']}  disagreement {row['disagreement']:.3f}  "
              f"uncertainty {row['uncertainty']:.3f}")
    if doc["skipped"]:
        print(f"skipped {len(doc['skipped'])} unreadable image(s), the first: {doc['skipped'][0]['reason']} "
              "(all listed in select.json)")
    print("wrote " + ", ".join(doc["files"]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from multibox.jobs.export import export_job

    info = export_job(args.model, args.format, args.out, args.opset, args.int8, args.calib)
    print(f"exported: {info['path']} ({info['format']}, S={info['image_size']}, K={info['num_boxes']}, "
          f"{info['windows']} window; vs the eager model: boxes within {info['max_box_diff_px']:.2g} px, scores within "
          f"{info['max_score_diff']:.1e}); contract: {info['path']}.json")
    if args.int8:
        q = info["int8"]
        print(f"int8: {q['path']} (calibrated on {q['calibration_images']} images of {q['calibration']}; vs the eager "
              f"model on them: boxes within {q['max_box_diff_px']:.2g} px, scores within {q['max_score_diff']:.2g}; "
              f"its detection rate: multibox evaluate --model {q['path']})")
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    from multibox.jobs.paper import paper

    print(f"report: {paper(args.out, args.scale, args.device, args.unseen_class)}")
    return 0


# "val" and "predict": the names Ultralytics users type for evaluate and detect.
def cmd_serve(args: argparse.Namespace) -> int:
    from multibox.jobs.serve import serve

    serve(args.model, args.classifier, args.host, args.port, args.max_batch, args.max_wait_ms, args.token, args.device,
          args.backend, args.threads)
    return 0


COMMANDS = {"train": cmd_train, "train-classifier": cmd_train, "demo": cmd_demo, "evaluate": cmd_evaluate,
            "val": cmd_evaluate, "detect": cmd_detect, "predict": cmd_detect, "priors": cmd_priors, "data": cmd_data,
            "baseline": cmd_baseline, "compare": cmd_compare, "export": cmd_export, "paper": cmd_paper,
            "serve": cmd_serve, "select": cmd_select}
