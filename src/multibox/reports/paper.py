"""The Markdown report of `multibox paper` (:mod:`multibox.jobs.paper`): its results dict as the paper's
tables, with the figures linked and the paper's own numbers alongside for orientation."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from multibox.reports.tables import percent, table

RATE_KS = ("1", "5", "10", "25", "100")


def percent_sign(value: float) -> str:
    return f"{percent(value)} %"


def setup_section(results: dict) -> str:
    plan, secs = results["plan"], results["training_seconds"]
    return "\n".join([
        "# DeepMultiBox on the embedded synthetic data: the paper's tables and figures",
        "",
        f"Written by `multibox paper`. Test split: {results['dataset']}, {results['num_images']} images of"
        " 160 x 160 px,"
        " 5 shape classes; training split: 4,000 images. Every network is the `tiny` CNN (CPU budget), trained for a",
        "fixed number of steps, so the numbers do not depend on the machine's speed (the wall times do).",
        "",
        table(["network", "input", "steps x batch", "training wall time"], [
            ["localizer (K = 100, Adagrad 0.003)", "128 px, max center square", f"{plan['localizer_steps']} x 32",
             f"{secs['localizer'] / 60:.1f} min"],
            ["classifier (C + 1 = 6 outputs, Adagrad 0.01)", "64 px, max square of the box",
             f"{plan['classifier_steps']} x 64",
             f"{secs['classifier'] / 60:.1f} min"],
            [f"localizer without `{plan['unseen_class']}` (Fig. 5)", "128 px", f"{plan['unseen_steps']} x 32",
             f"{secs['unseen'] / 60:.1f} min"]]),
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, PyTorch {torch.__version__};"
        " the 2 CPU"
        " cores were shared with other jobs, so wall times are noisy (training times add up all sessions of a run).",
    ])


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
        "Top 10 localizer boxes after NMS 0.5, each classified on its max square region; score = localizer"
        " confidence x classifier probability; every (box, class) pair is a detection. The last row classifies the"
        " ground-truth boxes instead (confidence 1): what the classifier gives with a perfect localizer.",
        "",
        table(["method"] + names + ["mAP"], body),
        "",
        "Paper (VOC 2007 test, 20 classes): mAP 0.29.",
    ])


def table2_section(rows: dict) -> str:
    body = [[label] + [percent_sign(v[k]) for k in ("det@5", "class@5", "det@1", "class@1")] for label, v in rows.items()]
    return "\n".join([
        "## Table 2: ILSVRC-2012 metrics, classifier applied to the top N windows",
        "",
        "Windows: localizer boxes after NMS 0.4, ranked by confidence; only the best box of each class is kept"
        " (§4.4.1). A det@k hit needs a correct label among the top k guesses with IoU >= 0.5 to an object of"
        " that label.",
        "",
        table(["method", "det@5", "class@5", "det@1", "class@1"], body),
        "",
        "With only C = 5 classes, the 5 guesses cover every class, so class@5 is 100 % whenever each class gets a box;"
        " det@1 / class@1 are the informative columns here. Paper (1,000 classes): det@5 56.7 % (top 1) to 59.1 %"
        " (top 10), class@5 73.0 % to 78.8 %; classifying the ground truth directly 82.8 %.",
    ])


def figure5_section(fig5: dict) -> str:
    body = [[label, str(v["num_objects"]), f"{v['AP']:.3f}", percent_sign(v["detection_rate"]["10"])]
            for label, v in fig5.items()]
    return "\n".join([
        "## Fig. 5: class-agnostic detection of seen and unseen classes",
        "",
        "Precision-recall with every box a detection of \"object\" (IoU >= 0.5, any class); objects outside the"
        " measured classes are ignored (neither hits nor false positives). The held-out localizer never saw an image"
        " containing the unseen class.",
        "",
        table(["localizer: measured on", "objects", "AP (11-point)", "detection rate @ 10"], body),
        "",
        "![Fig. 5](fig5_unseen_pr.png)",
    ])


def cost_section(cost: dict) -> str:
    body = [[label, str(v["localizer_inputs"]), f"{v['classifier_crops']:.1f}", f"{v['network_evaluations']:.1f}",
             f"{v['localizer_ms']:.1f}", f"{v['classifier_ms']:.1f}", f"{v['total_ms']:.1f}"]
            for label, v in cost.items() if isinstance(v, dict)]
    return "\n".join([
        "## Cost per image at N = 10",
        "",
        f"Median over {cost['images']} test images of each image's fastest of 3 passes, one image at a time (its"
        " crops in one classifier batch), on this"
        f" CPU with {cost['torch_threads']} threads, shared with other jobs (1-minute load average"
        f" {cost['load_average']:.1f} when timing began): wall times are noisy. Network evaluations: localizer"
        " inputs (1 center square, or 10 windows) plus one classifier evaluation per box (§4.2.2).",
        "",
        table(["localizer", "localizer inputs", "classifier crops", "network evaluations", "localizer ms",
               "classifier ms", "total ms"], body),
    ])


def write_report(results: dict, names: list[str], out: Path) -> Path:
    """OUT/report.md from the results of :func:`multibox.jobs.paper.paper`."""
    sections = [setup_section(results), figure1_section(results["fig1"]), table1_section(results["table1"], names),
                table2_section(results["table2"]), figure5_section(results["fig5"]), cost_section(results["cost"])]
    path = Path(out) / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    return path
