"""The training output folder: recognising our own, starting, resuming or replacing a run, the student commit.

A training folder carries the marker ``.pyterrier_disco.json`` (type ``disco_training``, ``disco_student``
once the student is saved) and holds only ``run.json``, ``train_log.csv``, ``checkpoint-<step>/``, the
student's files (listed in the marker before they are moved in) and ``pt_meta.json``, written last: a
folder with a ``pt_meta.json`` holds a complete student. ``--overwrite`` empties only such a folder; one
with anything else in it (a user's notes) or without the marker is never deleted.
"""
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, List

from .._checksums import manifest
from .._folders import MARKER, foreign_entries, read_marker, refuse_foreign, write_marker
from .._utils import read_json, write_json

KINDS = ("disco_training", "disco_student")
_OURS = re.compile(r"run\.json|train_log\.csv|pt_meta\.json|checkpoint-\d+|\..+\.tmp|\..+\.lock")
# a student saved before the marker existed: the files transformers writes for a BERT-like model
_LEGACY_STUDENT = re.compile(r"config\.json|model\.safetensors|generation_config\.json|vocab\.txt|"
                             r"tokenizer(_config)?\.json|special_tokens_map\.json")


def _ours(name: str) -> bool:
    return bool(_OURS.fullmatch(name))


def is_training_folder(folder) -> bool:
    """Whether ``folder`` is a training folder (or student) this project wrote, holding nothing else."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is not None:
        return marker.get("type") in KINDS and foreign_entries(folder, _ours) == []
    try:  # written before the marker: a recipe with its config and plan, and only our file names
        recipe = read_json(folder / "run.json")
    except (OSError, ValueError):
        return False
    return isinstance(recipe.get("config"), dict) and isinstance(recipe.get("plan"), dict) and \
        all(_ours(p.name) or _LEGACY_STUDENT.fullmatch(p.name) for p in folder.iterdir())


class TrainingFolder:
    def __init__(self, path):
        self.path = Path(path)

    def checkpoints(self) -> List[Path]:
        return sorted((p for p in self.path.glob("checkpoint-*[0-9]") if p.name[11:].isdigit()),
                      key=lambda p: int(p.name.split("-")[1]))

    def prepare(self, recipe: dict, resume: bool, overwrite: bool) -> bool:
        """Check the folder for this ``recipe``; returns True when resuming from a checkpoint."""
        out, run_file = self.path, self.path / "run.json"
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder; choose another --out")
        if out.exists() and any(out.iterdir()):
            if overwrite:
                if not is_training_folder(out):
                    refuse_foreign(out, "a training run")
                self._empty()
            elif (read_marker(out) or {}).get("type") not in KINDS and not is_training_folder(out):
                raise FileExistsError(f"{out} exists and is not a DiSCo training folder; choose another --out "
                                      "(--overwrite replaces only a training folder)")
            else:
                if read_json(run_file, "training recipe") != recipe:
                    raise FileExistsError(f"{out} holds a different training run (see {run_file}); "
                                          "choose another --out or pass --overwrite")
                if (out / "pt_meta.json").exists():
                    raise FileExistsError(f"{out} already holds this trained student; pass --overwrite "
                                          "to train it again")
                if not resume:
                    raise FileExistsError(f"{out} holds an unfinished run of this recipe: pass --resume to "
                                          "continue it or --overwrite to start again")
                self._remove_leftovers()
                return bool(self.checkpoints())
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "disco_training")
        write_json(run_file, recipe)
        return False

    def _empty(self) -> None:
        """Delete what a previous run wrote (the caller checked that it holds nothing else)."""
        for entry in self.path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _remove_leftovers(self) -> None:
        """Temporary files and folders of an interrupted run (``.<name>.<random>.tmp``)."""
        for entry in self.path.glob(".*.tmp"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def drop_checkpoints(self, keep: int = 0) -> None:
        for old in self.checkpoints()[:len(self.checkpoints()) - keep]:
            shutil.rmtree(old, ignore_errors=True)

    def commit_student(self, save: Callable[[Path], None], meta: dict) -> None:
        """Write the student with ``save(folder)`` into a temporary folder inside the run, then move its files
        in and write ``pt_meta.json`` (with their checksums) last; the checkpoints go only after that. If
        anything fails (a full disk), the files already there and the checkpoints are kept."""
        tmp = Path(tempfile.mkdtemp(prefix=".student.", suffix=".tmp", dir=self.path))
        try:
            save(tmp)
            names = sorted(p.name for p in tmp.iterdir())
            clash = [n for n in names if n == MARKER or _ours(n)]
            if clash:
                raise ValueError(f"the student's files would replace the run's own {clash}")
            files = manifest(tmp, names)
            write_marker(self.path, "disco_training", files=names)  # listed before they arrive
            for name in names:
                os.replace(tmp / name, self.path / name)
            write_json(self.path / "pt_meta.json", {**meta, "files": files})
            write_marker(self.path, "disco_student", files=names)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.drop_checkpoints()
