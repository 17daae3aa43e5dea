"""Small shared helpers: the user cache folder and atomic writes."""
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def packaged_file(distribution: str, relative: str, what: str, install: str) -> Path:
    """A file shipped inside an installed distribution (located with importlib.metadata, not imported)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as e:
        raise ImportError(f"{what} comes with the '{distribution}' package: {install}, "
                          "or pass a model name or folder") from e
    path = Path(dist.locate_file(relative))
    if not path.exists():
        raise FileNotFoundError(f"{what} is missing from the installed '{distribution}' package: {path}")
    return path


def resolve_device(device=None):
    """The torch device to run on: ``device`` when given (a device that does not exist here is a ValueError
    naming it), else CUDA when available, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown torch device {device!r}: {e}") from e
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} was asked for, but MPS is not available on this machine")
    return resolved


def cache_dir(*parts: str) -> Path:
    """The project's user cache folder (``$DISCO_CACHE_DIR`` or ``~/.cache/pyterrier_disco``), created on demand."""
    root = os.environ.get("DISCO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pyterrier_disco")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_file(path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; it replaces ``path`` only when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj: Any) -> None:
    with atomic_file(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)


@contextlib.contextmanager
def atomic_dir(path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it is renamed to ``path`` only when the block succeeds."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; remove it or pass overwrite=True")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
