"""The Markdown report of `multibox paper` (:mod:`multibox.jobs.paper`): its results dict as the paper's
tables, with the figures linked and the paper's own numbers alongside for orientation."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from multibox.atomic import write_text_atomic
from multibox.reports.tables import percent, table

RATE_KS = ("1", "5", "10", "25", "100")


def percent_sign(value: float) -> str:
    return f"{percent(value)} %"


def setup_section(results: dict) -> str:
    plan, secs = results["plan"], results["training_seconds"]
    return "\n".join([
        "# DeepMultiBox on the embedded synthetic data: the paper's tables and figures",
        "",
        (f"Written by `multibox paper`. Test split: {results['dataset']}, {results['num_images']} images of"
        " 160 x 160 px,"
        " 5 shape classes; training split: 4,000 images. Every network is the `tiny` CNN (CPU budget), trained for a"),
        "fixed number of steps, so the numbers do not depend on the machine's speed (the wall times do).",
        "",
        table(["network", "input", "steps x batch", "training wall time"], [
            ["localizer (K = 100, Adagrad 0.003)", "128 px, max center square", f"{plan['localizer_steps']} x 32",
             f"{secs['localizer'] / 60:.1f} min"],
            ["classifier (C + 1 = 6 outputs, Adagrad 0.01)", "64 px, max square of the box",
             f"{plan['classifier_steps']} x 64",
             f"{secs['classifier'] / 60:.1f} min"],
            [f"localizer without `{plan['unseen_class']}` (Fig. 5)", "128 px", f"{plan['unseen_steps']} x 32",
             f"{secs['unseen'] / 60:.1f} min"]] + extra_networks(plan, secs)),
        "",
        *scale_note(results.get("scale")),
        (f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, PyTorch {torch.__version__};"
        " the 2 CPU"
        " cores were shared with other jobs, so wall times are noisy (training times add up all sessions of a run)."),
    ])


def scale_note(scale: float | None) -> list[str]:
    """The line saying a run was shortened (`multibox paper --scale`), as a list of 0 or 2 lines."""
    if scale is None or scale == 1:
        return []
    return [(f"A shortened run, `--scale {scale:g}`: every step count is {scale:g} x the full plan's (1,000 steps a"
            " network, 500 for each cross-dataset localizer), so the networks are far less trained than at full scale."),
            ""]


def extra_networks(plan: dict, secs: dict) -> list[list[str]]:
    """The setup table's rows of the one-box-per-class network and the cross-dataset localizers (when run)."""
    rows = []
    if "one_box_per_class" in secs:
        rows.append(["one box per class (C + 1 softmax, C x 4 boxes, Adagrad 0.003; Table 2, Fig. 5)",
                     "128 px, max center square", f"{plan['one_box_steps']} x 32",
                     f"{secs['one_box_per_class'] / 60:.1f} min"])
    for i, shapes in enumerate(plan.get("cross_shapes", [])):
        if f"cross{i}" in secs:
            rows.append([f"localizer on the shapes {', '.join(shapes)} only (cross-dataset)", "128 px",
                         f"{plan['cross_steps']} x 32", f"{secs[f'cross{i}'] / 60:.1f} min"])
    return rows


def figure1_section(fig1: dict) -> str:
    rows = [[name] + [percent_sign(fig1[key][k]) for k in RATE_KS if k in fig1[key]]
            for name, key in (("max-center crop", "single"), ("+ 3 x 3 windows of 60 % (two scales)", "multiscale"),
                              ("priors only (baseline)", "priors"))]
    return "\n".join([
        "## Fig. 1: detection rate of class \"object\" vs number of boxes per image",
        "",
        f"Share of the {fig1['num_objects']} test objects hit (IoU >= 0.5) by one of the top k boxes after NMS 0.5.",
        "",
        table(["boxes per image k"] + [k for k in RATE_KS if k in fig1["single"]], rows),
        "",
        "![Fig. 1](fig1_detection_rate.png)",
        "",
        "Paper (VOC 2012 training, VOC 2007 test): 45.3 % at 10 boxes with the max-center crop, 48 % with two scales.",
    ])


def table1_section(rows: dict, names: list[str]) -> str:
    body = [[label] + [f"{values.get(n, float('nan')):.3f}" for n in names] + [f"**{values['mAP']:.3f}**"]
            for label, values in rows.items()]
    return "\n".join([
        "## Table 1: average precision per class (VOC 2007 11-point AP, IoU >= 0.5)",
        "",
        ("Top 10 localizer boxes after NMS 0.5, each classified on its max square region; score = localizer"
        " confidence x classifier probability; every (box, class) pair is a detection. The last row classifies the"
        " ground-truth boxes instead (confidence 1): what the classifier gives with a perfect localizer."),
        "",
        table(["method"] + names + ["mAP"], body),
        "",
        "Paper (VOC 2007 test, 20 classes): mAP 0.29.",
    ])


def table2_section(rows: dict) -> str:
    body = [[label] + [percent_sign(v[k]) for k in ("det@5", "class@5", "det@1", "class@1")] for label, v in rows.items()]
    return "\n".join([
        "## Table 2: ILSVRC-2012 metrics: one box per class, and the classifier applied to the top N windows",
        "",
        ("One-box-per-class (§4.4.2's competitor): one network, a C + 1-way softmax and one box per class; its"
        " guesses are its top classes, each with its box. Windows: localizer boxes after NMS 0.4, ranked by"
        " confidence; only the best box of each class is kept (§4.4.1). A det@k hit needs a correct label among"
        " the top k guesses with IoU >= 0.5 to an object of that label."),
        "",
        table(["method", "det@5", "class@5", "det@1", "class@1"], body),
        "",
        ("With only C = 5 classes, the 5 guesses cover every class, so class@5 is 100 % whenever each class gets a box;"
        " det@1 / class@1 are the informative columns here. Paper (1,000 classes): det@5 56.7 % (top 1) to 59.1 %"
        " (top 10), class@5 73.0 % to 78.8 %; classifying the ground truth directly 82.8 %; one box per class"
        " 61.0 % / 79.4 %."),
    ])


def figure5_section(fig5: dict) -> str:
    body = [[label, str(v["num_objects"]), f"{v['AP']:.3f}", percent_sign(v["detection_rate"]["10"])]
            for label, v in fig5.items()]
    return "\n".join([
        "## Fig. 5: class-agnostic detection of seen and unseen classes",
        "",
        ("Precision-recall with every box a detection of \"object\" (IoU >= 0.5, any class); objects outside the"
        " measured classes are ignored (neither hits nor false positives). The held-out localizer never saw an image"
        " containing the unseen class."),
        "",
        table(["localizer: measured on", "objects", "AP (11-point)", "detection rate @ 10"], body),
        "",
        "![Fig. 5](fig5_unseen_pr.png)",
    ])


def claims_section(claims: dict) -> str:
    """The paper's two claims about one box per class, measured (whichever way they come out)."""
    one, several = claims["one_object_per_class"], claims["several_of_a_class"]
    det5 = [[label, percent_sign(v)] for label, v in one["det@5"].items()]
    rates = [[label, percent_sign(v)] for label, v in several["detection_rate"].items()]
    return "\n".join([
        "## One box per class: the paper's two claims (§4.4.2)",
        "",
        (f"1. *Competitive on det@5 when each class has one object.* det@5 on the {one['images']} test images"
        " whose classes each have exactly one (counted) object:"),
        "",
        table(["method", "det@5"], det5),
        "",
        (f"2. *It cannot capture several instances of one class.* On the {several['images']} test images with"
        f" several objects of one class, the share of those classes' {several['objects']} objects that a box"
        " hits (IoU >= 0.5, any label; objects of classes that appear once are ignored):"),
        "",
        table(["boxes", "detection rate"], rates),
        "",
        ("One box per class gives at most one box per class, so on these images it can find at most one object"
        " of each repeated class; its other boxes find some of them only by chance."),
    ])


def pr_rows(entries: dict) -> list[list[str]]:
    """Table rows (label, objects, AP50, detection rate at 10) of class-agnostic PR entries."""
    return [[label, str(v["num_objects"]), f"{v['AP']:.3f}", percent_sign(v["detection_rate"].get("10", float("nan")))]
            for label, v in entries.items()]


def pr_section(title: str, intro: str, first_column: str, entries: dict, figure: str, after: list[str]) -> str:
    """A Fig. 5 section: title, what is measured, the class-agnostic PR table (:func:`pr_rows`), the figure."""
    rows = table([first_column, "objects", "AP50 (11-point)", "detection rate @ 10"], pr_rows(entries))
    return "\n".join([f"### {title}", "", intro, "", rows, "", f"![{title}]({figure})", *after])


def figure5_models_section(entries: dict) -> str:
    """Fig. 5's DeepMultiBox vs one-box-per-class comparison on every test object."""
    return pr_section(
        "Fig. 5: DeepMultiBox and one box per class, class-agnostic",
        "Every test object counts (IoU >= 0.5, any class). DeepMultiBox: its K = 100 boxes after NMS 0.5; one"
        " box per class: its C = 5 boxes after NMS 0.5 (footnote 3: the same criterion), each scored by its"
        " class probability.",
        "model", entries, "fig5_one_box_per_class_pr.png", [])


def cross_dataset_section(entries: dict) -> str:
    """Fig. 5 across datasets: each shape set's localizer on both test splits."""
    return pr_section(
        "Fig. 5: across datasets",
        "The paper applies the ImageNet-trained localizer to VOC and vice versa. Here the two datasets are"
        " synthetic scenes of disjoint shape sets (same layouts, sizes and textures; only the shapes differ):"
        " a localizer trained on each is evaluated, class-agnostic, on the test split of both.",
        "localizer: measured on", entries, "fig5_cross_dataset_pr.png",
        ["", "Paper: the ImageNet-trained model captures more VOC windows than vice versa (the richer class set)."])


def cost_section(cost: dict) -> str:
    body = [[label, str(v["localizer_inputs"]), f"{v['classifier_crops']:.1f}", f"{v['network_evaluations']:.1f}",
             f"{v['localizer_ms']:.1f}", f"{v['classifier_ms']:.1f}", f"{v['total_ms']:.1f}"]
            for label, v in cost.items() if isinstance(v, dict)]
    return "\n".join([
        "## Cost per image at N = 10",
        "",
        (f"Median over {cost['images']} test images of each image's fastest of 3 passes, one image at a time (its"
        " crops in one classifier batch), on this"
        f" CPU with {cost['torch_threads']} threads, shared with other jobs (1-minute load average"
        f" {cost['load_average']:.1f} when timing began): wall times are noisy. Network evaluations: localizer"
        " inputs (1 center square, or 10 windows) plus one classifier evaluation per box (§4.2.2)."),
        "",
        table(["localizer", "localizer inputs", "classifier crops", "network evaluations", "localizer ms",
               "classifier ms", "total ms"], body),
    ])


def write_report(results: dict, names: list[str], out: Path) -> Path:
    """OUT/report.md from the results of :func:`multibox.jobs.paper.paper`."""
    sections = [setup_section(results), figure1_section(results["fig1"]), table1_section(results["table1"], names),
                table2_section(results["table2"])]
    sections += [claims_section(results["claims"])] if "claims" in results else []
    sections += [figure5_section(results["fig5"])]
    sections += [figure5_models_section(results["fig5_models"])] if "fig5_models" in results else []
    sections += [cross_dataset_section(results["cross_dataset"])] if "cross_dataset" in results else []
    sections += [cost_section(results["cost"])]
    path = Path(out) / "report.md"
    write_text_atomic(path, "\n\n".join(sections) + "\n")
    return path
