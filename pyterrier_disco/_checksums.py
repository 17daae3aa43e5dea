"""Checksums of artifact files (indexes, students): the size and sha256 of every file, recorded at writing.

Opening an artifact checks every recorded file's size and the sha256 of the files up to ``QUICK_HASH_BYTES``
(a truncated or swapped file, a reversed lexicon); ``verify()`` / ``disco check`` hash every file.
"""
import hashlib
from pathlib import Path
from typing import Dict, Iterable, Type

QUICK_HASH_BYTES = 32 << 20  # hashed on every open: about 20 ms per 32 MiB here


def sha256(file: Path) -> str:
    with open(file, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest(folder, names: Iterable[str]) -> Dict[str, dict]:
    """``{name: {"size", "sha256"}}`` of the files ``names`` in ``folder``."""
    folder = Path(folder)
    return {name: {"size": (folder / name).stat().st_size, "sha256": sha256(folder / name)}
            for name in sorted(names)}


def check_files(folder, recorded: Dict[str, dict], error: Type[Exception], *, full: bool = False,
                where: str = "pt_meta.json") -> int:
    """Raise ``error`` naming the first file that is missing, has another size or (hashed when ``full`` or
    small) another sha256 than ``recorded``; returns how many files were hashed."""
    folder = Path(folder)
    if not isinstance(recorded, dict):
        raise error(f"{folder / where}: the recorded checksums are damaged")
    hashed = 0
    for name, expected in recorded.items():
        file = folder / name
        if not file.is_file():
            raise error(f"{file} is missing ({where} records it)")
        size = file.stat().st_size
        if size != expected.get("size"):
            raise error(f"{file} has {size} bytes but {where} records {expected.get('size')}: the file is "
                        "truncated or was replaced")
        if full or size <= QUICK_HASH_BYTES:
            hashed += 1
            if sha256(file) != expected.get("sha256"):
                raise error(f"{file} does not match the sha256 that {where} records: the file was modified "
                            "or is damaged")
    return hashed
