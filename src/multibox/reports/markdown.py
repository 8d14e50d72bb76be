"""Markdown reports: ``report.md`` of one evaluation, laid out like the paper's results, and the table of
``multibox compare``.

report.md sections, in order: the detection rate at k = 1, 5, 10, 25, 50, 100 boxes per image for the
method and each baseline (Fig. 1, with its plot), the same by object size, the class-agnostic AP at
IoU 0.5 (Fig. 5, with the PR plot), COCO-style class-agnostic proposal AP/AR, and -- only when the
detections carry class labels -- per-class VOC AP (Table 1) and ILSVRC det@5 / class@5 (Table 2).
"""

from __future__ import annotations

from pathlib import Path

from multibox.atomic import write_text_atomic
from multibox.evaluation.detection_rate import REPORT_KS, SIZE_RANGES
from multibox.reports.tables import fraction, percent, table

COCO_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
CLASSES_PER_TABLE = 10  # Table 1 splits its 20 classes over two rows of 10


def method_rows(metrics: dict) -> dict[str, dict]:
    """{display name: per-method metrics}: the evaluated method first, then each baseline."""
    rows = {metrics.get("method", "DeepMultiBox"): metrics}
    return rows | {f"{name} baseline": b for name, b in metrics.get("baselines", {}).items()}


def reported_ks(rates: list[dict[str, float]]) -> list[str]:
    """The reported k that any of the rate dicts has, in increasing order."""
    return [str(k) for k in REPORT_KS if any(str(k) in r for r in rates)]


def rate_table(rows: dict[str, dict[str, float]], extra: dict[str, list[str]] | None = None) -> str:
    """Method x k detection rates (%); ``extra``: more columns {header: one cell per row}."""
    ks = reported_ks(list(rows.values()))
    extra = extra or {}
    body = [[name, *(percent(r.get(k)) for k in ks), *(cells[i] for cells in extra.values())]
            for i, (name, r) in enumerate(rows.items())]
    return table(["method", *(f"k={k}" for k in ks), *extra], body)


def size_table(rows: dict[str, dict]) -> str:
    """(method, object size) x k detection rates (%), with each size's object count."""
    sized = {f"{name}, {size} ({m['detection_rate_by_size'][size]['num_objects']})":
             m["detection_rate_by_size"][size]["detection_rate"]
             for name, m in rows.items() if "detection_rate_by_size" in m for size in SIZE_RANGES}
    return rate_table(sized)


def header_lines(metrics: dict) -> list[str]:
    """Title and what was evaluated: source, image and object counts, anything left out."""
    source = next((f"{key} `{metrics[key]}`" for key in ("model", "detections") if key in metrics), None)
    source = source or f"the {metrics.get('baseline', '?')} baseline's boxes (seed {metrics.get('seed', 0)})"
    lines = [f"# {metrics.get('method', 'DeepMultiBox')} on {metrics.get('dataset', '?')}", "",
             f"- evaluated: {source}",
             f"- {metrics['num_images']} images, {metrics['num_objects']} objects (objects marked ignore/difficult "
             f"not counted); {metrics.get('skipped_images', 0)} unreadable image(s) left out"]
    if metrics.get("unmatched_detections"):
        lines.append(f"- {metrics['unmatched_detections']} detection entries named no image of the split and "
                     "were left out")
    if metrics.get("images_without_detections"):
        lines.append(f"- {metrics['images_without_detections']} image(s) had no detections in the file")
    lines.append("- a ground-truth object is detected by a box overlapping it with Jaccard (IoU) >= 0.5")
    return lines


def size_range_text(low: float, high: float) -> str:
    """An area range [low, high) in px as side lengths squared: "< 32²", "32² to 96²", ">= 96²"."""
    if low == 0:
        return f"< {high ** 0.5:g}²"
    return f">= {low ** 0.5:g}²" if high == float("inf") else f"{low ** 0.5:g}² to {high ** 0.5:g}²"


def rate_sections(rows: dict[str, dict]) -> list[str]:
    """Fig. 1 table and plot, then the by-size table."""
    edges = ", ".join(f"{name} {size_range_text(low, high)}" for name, (low, high) in SIZE_RANGES.items())
    return ["## Detection rate vs number of boxes per image (Fig. 1)", "",
            "Share of objects (%) hit by at least one of the top k boxes of their image.", "",
            rate_table({name: m["detection_rate"] for name, m in rows.items()}), "",
            "![detection rate](detection_rate.png)", "",
            "## Detection rate by object size", "",
            f"Objects by box area in pixels of the original image (COCO's ranges): {edges}. Object counts in parentheses; "
            "a dash where there is no object of that size.", "", size_table(rows)]


def proposal_sections(rows: dict[str, dict], pr_plot: bool) -> list[str]:
    """Class-agnostic PR AP (Fig. 5) and the COCO-style proposal metrics."""
    pr = table(["method", "AP at IoU 0.5"], [[name, fraction(m.get("pr_ap50"))] for name, m in rows.items()])
    coco = table(["method", *COCO_COLUMNS],
                 [[name, *(fraction(m["coco"].get(c)) for c in COCO_COLUMNS)] for name, m in rows.items() if "coco" in m])
    lines = ["## Class-agnostic precision-recall (Fig. 5)", "",
             "Every box is a detection of one class \"object\" (labels ignored); AP is VOC2007's 11-point "
             "average, duplicates of a found object count as false positives.", "", pr, ""]
    lines += ["![precision-recall](pr_curve.png)", ""] if pr_plot else []
    return lines + ["## COCO-style proposal metrics (class-agnostic)", "",
                    "pycocotools' numbers with every class pooled (useCats=0): AP over IoU 0.50:0.95, "
                    "AR with 1 / 10 / 100 boxes per image; s / m / l are the object sizes above.", "", coco]


def calibration_section(metrics: dict) -> list[str]:
    """Do the model's scores mean what they say (metrics["calibration"]; none: no section)."""
    cal = metrics.get("calibration")
    if not cal:
        return []
    body = [[f">= {t}", str(v["boxes"]), fraction(v["precision"])] for t, v in cal["precision_at"].items()]
    return ["## Calibration of the scores", "",
            f"Over the top {cal['max_det']} boxes per image, a box is right when it is a true positive of the PR "
            "curve above. Expected calibration error (10 score bins, |share right - mean score| weighted by "
            f"boxes): {fraction(cal['ece'])}. Precision of the boxes a score threshold keeps (`--conf`):", "",
            table(["score", "boxes", "precision"], body)]


def class_ap_section(rows: dict[str, dict]) -> list[str]:
    """Table 1: per-class VOC AP of the methods whose detections carry labels (none: no section)."""
    labelled = {name: m["voc"] for name, m in rows.items() if "voc" in m}
    if not labelled:
        return []
    classes = sorted({c for voc in labelled.values() for c in voc["ap"]}, key=str)
    lines = ["## Average precision per class (Table 1)", "", "VOC AP (11-point, IoU 0.5) of the labelled detections."]
    for start in range(0, len(classes), CLASSES_PER_TABLE):
        chunk = classes[start : start + CLASSES_PER_TABLE]
        body = [[name, *(fraction(voc["ap"].get(c)) for c in chunk)] for name, voc in labelled.items()]
        lines += ["", table(["class", *chunk], body)]
    means = [[name, fraction(voc["mAP"])] for name, voc in labelled.items()]
    return lines + ["", table(["method", "mAP"], means)]


def ilsvrc_section(rows: dict[str, dict]) -> list[str]:
    """Table 2: det@5 / class@5 (and the challenge's errors) of labelled methods (none: no section)."""
    labelled = {name: m["ilsvrc"] for name, m in rows.items() if "ilsvrc" in m}
    if not labelled:
        return []
    columns = ("det@5", "class@5", "det@5_error")
    body = [[name, *(percent(s.get(c)) for c in columns), str(s["num_images"])] for name, s in labelled.items()]
    return ["## Classification with localization (Table 2)", "",
            "Up to 5 (label, box) guesses per image, the best box of each label; det@5 needs the label and "
            "IoU >= 0.5 with an object of that label, class@5 the label only.", "",
            table(["method", "det@5 (%)", "class@5 (%)", "det@5 error (%)", "images"], body)]


def render(metrics: dict, pr_plot: bool = True) -> str:
    """The whole report.md text of one metrics.json."""
    rows = method_rows(metrics)
    sections = [header_lines(metrics), rate_sections(rows), proposal_sections(rows, pr_plot),
                calibration_section(metrics), class_ap_section(rows), ilsvrc_section(rows)]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"


def write_markdown(metrics: dict, path: str | Path, pr_plot: bool = True) -> None:
    write_text_atomic(path, render(metrics, pr_plot))


def compare_markdown(runs: dict[str, dict]) -> str:
    """compare.md: the runs' detection rates side by side, with their class-agnostic AP and AR@100."""
    extra = {"PR AP50": [fraction(m.get("pr_ap50")) for m in runs.values()],
             "COCO AR100": [fraction(m.get("coco", {}).get("AR100")) for m in runs.values()]}
    datasets = sorted({str(m.get("dataset", "?")) for m in runs.values()})
    return "\n".join(["# Comparison", "", f"Data: {', '.join(datasets)}. Detection rate (%) at k boxes per image, "
                      "IoU >= 0.5.", "", rate_table({n: m["detection_rate"] for n, m in runs.items()}, extra), "",
                      "![detection rate](detection_rate.png)", ""])
