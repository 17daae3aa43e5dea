"""Small shared helpers: the user cache folder, the device, atomic writes (folders: :mod:`._folders`)."""
import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator

from ._errors import MissingExtraError
from ._folders import _umask, atomic_dir  # noqa: F401  (atomic_dir: re-exported)


def packaged_file(distribution: str, relative: str, what: str, install: str) -> Path:
    """A file shipped inside an installed distribution (located with importlib.metadata, not imported)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as e:
        raise MissingExtraError(f"{what} comes with the '{distribution}' package: {install}, "
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
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give the name of a file to write", str(path))
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


def write_json(path, obj: Any) -> None:
    with atomic_file(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)


def read_json(path, what: str = "JSON file", expect: type = dict) -> Any:
    """Parse a JSON file; a file that is not valid JSON, or whose top level is not ``expect``, raises
    :class:`~pyterrier_disco._errors.CorruptFileError` naming it (a missing file: ``FileNotFoundError``)."""
    from ._errors import CorruptFileError

    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path} is not valid JSON ({e}): the {what} is damaged") from e
    if expect is not None and not isinstance(value, expect):
        raise CorruptFileError(f"{path} holds a JSON {type(value).__name__}, not the {expect.__name__} a {what} "
                               "holds: the file is damaged or not ours")
    return value


def cpu_caches() -> Dict[int, int]:
    """{level: bytes} of the data/unified caches of cpu0, from ``/sys`` (empty where it is not readable)."""
    out = {}
    for folder in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind = (folder / "type").read_text().strip()
            level = int((folder / "level").read_text())
            size = (folder / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
            out[level] = int(size.rstrip("KMG")) * unit
    return out
