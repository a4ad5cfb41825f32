"""Which compute device this backend uses, for ``/v1/health``."""

from __future__ import annotations

import importlib.util
import logging

log = logging.getLogger(__name__)


def detect_device() -> str:
    """``"cuda:<name>"`` when torch sees a CUDA device, else ``"cpu"``."""
    if importlib.util.find_spec("torch") is None:
        return "cpu"
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except Exception as exc:  # a broken CUDA install must not stop the CPU path
        log.warning("torch could not query CUDA (%s); using the CPU", exc)
    return "cpu"
