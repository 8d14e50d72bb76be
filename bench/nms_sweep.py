"""NMS threshold sweep: the same trained models scored at several NMS thresholds on both questions of
bench/quality.py (docs/quality.md, "NMS threshold from the training boxes").

Each (protocol, seed) is trained once with quality.py's configuration into ``--models`` (kept: a second
run only scores), then its val split is scored like `multibox evaluate` at every threshold. Not a timed
test: detection rates only.

    PYTHONPATH=src python bench/nms_sweep.py --models /tmp/nms-models [--config default --seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import quality  # noqa: E402
from multibox.data.build import load_split  # noqa: E402
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from multibox.engine.trainer import train  # noqa: E402
from multibox.evaluation.scoring import dataset_targets, score  # noqa: E402
from multibox.inference.localizer import Localizer  # noqa: E402
from multibox.inference.predict import predict_dataset  # noqa: E402


def trained(name: str, protocol: str, seed: int, models: Path) -> Path:
    """last.pt of configuration ``name`` trained on the protocol's training split (trained if missing)."""
    out = models / f"{protocol}-{seed}"
    if not (out / "done").exists():
        preset, overrides = quality.CONFIGS[name]
        train(quality.build_config(preset, overrides, quality.TREES, quality.PROTOCOLS[protocol][0], seed), out)
        (out / "done").write_text(name)
    return out / "last.pt"


def rates(path: Path, split: str, thresholds: list[float]) -> dict[float, tuple[float, float, float, float]]:
    """{threshold: (DR@10, DR@25, DR@100, PR AP50)} of the model at ``path`` on ``split``."""
    model, cfg = model_from_checkpoint(load_checkpoint(path))
    dataset = load_split(cfg, split)
    targets, found = dataset_targets(dataset), {}
    for iou in thresholds:
        localizer = Localizer(model, cfg.model.image_size, "cpu", iou, cfg.model.windows)
        m = score(predict_dataset(localizer, dataset, 8, 0), targets, 100).metrics
        found[iou] = (*(m["detection_rate"][k] for k in ("10", "25", "100")), m["pr_ap50"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="a configuration of bench/quality.py")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--protocols", default="sites,same")
    parser.add_argument("--nms", default="0.2,0.25,0.3,0.35,0.4,0.5,0.6", help="comma-separated NMS thresholds")
    parser.add_argument("--models", required=True, help="folder for the trained models (kept between runs)")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.nms.split(",")]
    print("| question | NMS IoU | seeds | DR@10 | DR@25 | DR@100 | PR AP50 | DR@100 per seed |\n|---|---:|---|---:|---:|---:|---:|---|")
    for protocol in args.protocols.split(","):
        seeds = [int(s) for s in args.seeds.split(",")]
        runs = [rates(trained(args.config, protocol, s, Path(args.models)), quality.PROTOCOLS[protocol][1], thresholds)
                for s in seeds]
        for iou in thresholds:
            cols = [statistics.mean(run[iou][i] for run in runs) for i in range(4)]
            print(f"| {' -> '.join(quality.PROTOCOLS[protocol])} | {iou:g} | {args.seeds} | {100 * cols[0]:.1f} | "
                  f"{100 * cols[1]:.1f} | {100 * cols[2]:.1f} | {cols[3]:.3f} | "
                  f"{' / '.join(f'{100 * run[iou][2]:.1f}' for run in runs)} |", flush=True)


if __name__ == "__main__":
    main()
