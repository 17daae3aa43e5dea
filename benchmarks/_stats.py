"""Shared reporting helpers: latency summaries and the ``targets`` entries every benchmark prints."""
import os
import platform
from typing import Sequence

import numpy as np


def summary(seconds: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict:
    """Median, p90, min and count of timings (multiplied by ``scale``, e.g. 1000 for milliseconds)."""
    values = np.asarray(seconds, dtype=float) * scale
    return {"median": round(float(np.median(values)), digits), "p90": round(float(np.percentile(values, 90)), digits),
            "min": round(float(values.min()), digits), "n": int(len(values))}


def target(name: str, ratio: float, required: float, detail: str = "", extra_ok: bool = True) -> dict:
    """One entry of the top-level ``targets`` list; ``extra_ok`` carries a side condition (e.g. a tolerance)."""
    return {"name": name, "ratio": round(float(ratio), 2), "target": required,
            "met": bool(ratio >= required and extra_ok), "detail": detail}


def machine() -> dict:
    """CPU model and core count, to read figures against."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}
