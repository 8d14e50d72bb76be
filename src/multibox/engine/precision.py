"""Where and how precisely the network computes: the device, autocast dtype, loss scaling and layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from multibox.config import AMP_MODES, TrainConfig
from multibox.errors import UserError


def resolve_device(name: str | int) -> torch.device:
    """"auto" -> cuda when available, else cpu; a GPU number ("0", as Ultralytics and nvidia-smi count)
    -> cuda:N; "cuda" without a GPU (or GPU N beyond the count) is a user error."""
    name = str(name).strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.isdigit():
        name = f"cuda:{name}"
    elif "," in name:
        raise UserError(f"device {name!r}: one device per process; several GPUs train under torchrun "
                        "(docs/scaling.md)")
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise UserError(f"device {name!r}: expected cpu, cuda, cuda:N, a GPU number or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name}: no CUDA device is available on this machine")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise UserError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


@dataclass
class Precision:
    """How the forward pass computes on the device: autocast dtype (None: fp32), loss scaling, layout."""

    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler  # enabled for fp16 only; a disabled scaler passes calls straight through
    channels_last: bool

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None)


def resolve_precision(t: TrainConfig, device: torch.device) -> Precision:
    """cfg.train.amp / channels_last for ``device``. "auto": bf16 on CUDA GPUs that have it (no loss
    scaling needed: fp32's exponent range), fp16 + GradScaler on older GPUs, fp32 on the CPU (whose
    bf16 matmuls are only fast with AMX)."""
    if t.amp not in AMP_MODES:
        raise UserError(f"train.amp {t.amp!r}: expected one of {', '.join(AMP_MODES)}")  # a YAML typo
    mode = t.amp
    if mode == "auto":
        mode = "off" if device.type != "cuda" else "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("amp bf16: this GPU has no bfloat16 support; use fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]
    channels_last = device.type == "cuda" if t.channels_last is None else bool(t.channels_last)
    return Precision(dtype, torch.amp.GradScaler(device.type, enabled=mode == "fp16"), channels_last)
