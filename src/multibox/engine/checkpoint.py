"""Checkpoints: one self-contained file with weights, priors, optimizer, config and step.

A checkpoint's "task" entry says which network it holds: "localizer" (with its priors) or
"classifier" (with its class names; background is the last of its C + 1 outputs).

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so an interrupted
save never leaves a truncated checkpoint behind and the previous one stays usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from multibox.atomic import atomic_path, remove_leftovers
from multibox.config import Config
from multibox.errors import UserError
from multibox.modeling.localizer import build_grid_model, build_model


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save ``state`` to ``path`` atomically (:func:`multibox.atomic.atomic_path`).

    Temporary files that killed writes of ``path`` left behind are removed first; a disk fault is a
    one-line UserError naming ``path`` and the previous checkpoint stays intact.
    """
    remove_leftovers(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``; a missing or unreadable file is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"{path}: not a multibox checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"{path}: not a multibox checkpoint (no model/config entries)")
    return state


def checkpoint_config(state: dict[str, Any]) -> Config:
    """The config a checkpoint was trained with; checkpoints from before the conv head (no model.head)
    hold the paper's fc head."""
    raw = state["config"]
    if "head" not in raw.get("model", {}):
        raw = raw | {"model": raw.get("model", {}) | {"head": "fc"}}
    return Config.from_dict(raw, "checkpoint config")


def checkpoint_kind(state: dict[str, Any]) -> str:
    """The network a checkpoint holds: "localizer" or "classifier" (checkpoints before the "task"
    entry are localizers)."""
    return state.get("task", "localizer")


def model_from_checkpoint(state: dict[str, Any], kind: str | None = "localizer") -> tuple[nn.Module, Config]:
    """Rebuild the network of a checkpoint dict (the backbone's random init is overwritten): a
    :class:`MultiBox` localizer or a :class:`multibox.modeling.classifier.Classifier`.

    kind: the network the caller needs ("localizer", "classifier"); another kind is a UserError.
    None accepts either.
    """
    cfg = checkpoint_config(state)
    found = checkpoint_kind(state)
    if kind is not None and found != kind:
        raise UserError(f"the checkpoint holds a {found}, not a {kind}")
    m = cfg.model
    weights = "none" if m.backbone == "efficientnet_lite0" else None  # skip loading packaged weights twice
    if found == "classifier":
        from multibox.modeling.classifier import build_classifier

        model = build_classifier(m.backbone, len(state["class_names"]), weights, m.hidden_dim, m.grid)
    elif m.head == "conv":
        model = build_grid_model(m.backbone, state["model"]["shapes"], m.image_size, weights, tuple(m.levels), m.stride,
                                 m.conv_hidden, m.conv_depth)
    else:
        model = build_model(m.backbone, state["model"]["priors"], weights, m.hidden_dim, m.grid)
    model.load_state_dict(state["model"])
    return model, cfg
