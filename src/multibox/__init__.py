"""DeepMultiBox: scalable, class-agnostic object localization with one deep network.

Erhan, Szegedy, Toshev, Anguelov. *Scalable Object Detection using Deep Neural Networks*, CVPR 2014.
Inside the library every box is xyxy, normalized to [0, 1] of the square crop the network sees;
readers and outputs convert at the edges with the functions in :mod:`multibox.boxes`.

The Python API::

    from multibox import Localizer, Detector
    loc = Localizer.from_checkpoint("runs/train/best.pt", device="cpu")
    boxes, scores = loc.predict("photo.jpg", min_score=0.3)  # Tensor[N, 4] xyxy pixels, Tensor[N]
    multibox.set_threads(1)  # CPU threads of this process (default: the CPUs it may run on)

``Localizer`` and ``Detector`` are imported on first use (module ``__getattr__``), so ``import
multibox`` stays light (no torch) for the command line's ``--version`` and ``--help``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Detector", "Localizer", "__version__", "set_threads"]

_LAZY = {"Localizer": "multibox.inference.localizer", "Detector": "multibox.inference.detector",
         "set_threads": "multibox.threads"}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time see __getattr__
    from multibox.inference.detector import Detector
    from multibox.inference.localizer import Localizer
    from multibox.threads import set_threads


def __getattr__(name: str) -> Any:
    """``multibox.Localizer`` / ``multibox.Detector``, imported when first asked for."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'multibox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
