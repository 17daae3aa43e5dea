"""Checks of the command line's options before any work: counts, the device, and outputs that can be
written and, when they exist, are ours to replace (a bad run fails in its first second, not after hours)."""
import json
from pathlib import Path
from typing import Callable, Optional

from ._folders import output_lock, refuse_foreign


def at_least_one(**options) -> None:
    """Each option (``batch_size=0``...) is None or >= 1."""
    for name, value in options.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def device(name: Optional[str]) -> None:
    if name is not None:
        from ._utils import resolve_device

        resolve_device(name)


def writable(path: Path) -> None:
    """The output's folder accepts files, and no other process is writing the output (takes its lock once)."""
    with output_lock(path):
        pass


def output_folder(path, *, overwrite: bool, ours: Callable[[Path], bool], what: str,
                  reuse: Callable[[Path], bool] = None) -> None:
    """A folder output: absent, empty, or ``overwrite`` and ours to replace; with ``reuse``, a folder it
    accepts (a training run to resume) may stay."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a folder; choose another --out")
        if any(path.iterdir()):
            if overwrite:
                if not ours(path):
                    refuse_foreign(path, what)
            elif reuse is None or not reuse(path):
                raise FileExistsError(f"{path} already exists; pass --overwrite to replace it" if ours(path) else
                                      f"{path} exists and is not {what}; choose another --out")
    writable(path)


def output_file(path, ours: Callable[[Path], bool], what: str) -> None:
    """A file output: absent, or a file of ours (``what``) that is replaced."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; --out names the file to write")
    if path.exists() and not ours(path):
        raise FileExistsError(f"{path} exists and is not {what}: it is never replaced; choose another --out")
    writable(path)


def is_results_json(path: Path) -> bool:
    """A results file ``disco evaluate --out`` wrote: a JSON list of systems with their name and label."""
    try:
        records = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(records, list) and all(isinstance(r, dict) and {"name", "label"} <= set(r) for r in records)


PLOT_FILES = ("results.csv", "results.json", "per_turn.csv", "by_depth.png", "tradeoff.png")


def plots_folder(path) -> None:
    """``--plots``: the files written there replace only an earlier ``--plots`` output (its results.json)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder; choose another --plots")
    taken = [n for n in PLOT_FILES if (path / n).exists()]
    if taken and not is_results_json(path / "results.json"):
        raise FileExistsError(f"{path} holds {', '.join(taken)}, not written by `disco evaluate --plots`: they are "
                              "never replaced; choose another --plots")
    path.mkdir(parents=True, exist_ok=True)
    writable(path / "results.json")
