"""The per-request settings of ``POST /v1/detect`` and which requests may share one forward pass."""

from __future__ import annotations

from dataclasses import dataclass

MAX_TOP_K = 1000  # bounds the work one request can ask for (boxes kept, crops classified)


@dataclass(frozen=True)
class DetectOptions:
    """What one request asks for.

    top_k: boxes kept per image (with a classifier: localizer boxes classified, §4.2.2's N);
    min_score: boxes scoring lower are dropped (the detection score with a classifier);
    windows: the localizer's windows (:data:`multibox.config.WINDOW_MODES`), None = the checkpoint's;
    tile / overlap: tile side in pixels and overlap share for windows "tiles";
    classify: run the classifier on the boxes (only when one is loaded).
    """

    top_k: int = 10
    min_score: float = 0.0
    windows: str | None = None
    tile: float | None = None
    overlap: float = 0.2
    classify: bool = False

    def batch_key(self) -> tuple:
        """Requests with equal keys run in one forward pass. top_k and min_score are applied per
        request afterwards, except with a classifier, where top_k sets how many boxes are classified."""
        return self.windows, self.tile, self.overlap, self.classify, self.top_k if self.classify else None
