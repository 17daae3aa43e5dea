"""A trained DiSCo student: the conversation query encoder with its document-side SPLADE."""
import re
from pathlib import Path
from typing import Optional

import pyterrier as pt

from ._checksums import check_files
from ._errors import CorruptFileError
from ._utils import read_json
from .encoders import DEFAULT_MAX_LENGTH, Splade, SpladeModel


class DiSCo(Splade):
    """A trained DiSCo student (conversation query encoder) with its document-side SPLADE.

    >>> disco = DiSCo.from_pretrained("runs/student")
    >>> pipeline = disco.query_encoder() >> index.retriever(num_results=100)
    >>> pipeline(pyterrier_disco.conversations("ikat/2023/train"))
    """

    def __init__(self, query_model, doc_model=None, *, formatter=None, meta: Optional[dict] = None, **kwargs):
        super().__init__(query_model, doc_model, **kwargs)
        self.formatter = formatter
        self.meta = meta or {}

    @classmethod
    def from_pretrained(cls, folder, *, device: Optional[str] = None, doc_model=None, **kwargs) -> "DiSCo":
        """Load a student folder written by :func:`pyterrier_disco.train.train`.

        The document model is the one ``pt_meta.json`` records, if it is the embedded default, a hub id or a
        folder inside the student's folder; any other path is refused unless given as ``doc_model`` (which
        replaces the recorded one). The files are checked against their recorded sizes (and the small ones
        against their sha256); :meth:`verify` hashes them all.
        """
        from .conversation import ConversationFormatter

        meta = _student_meta(folder)
        check_files(folder, meta.get("files", {}), CorruptFileError)
        student = SpladeModel(folder, device=device, max_length=meta.get("max_length", DEFAULT_MAX_LENGTH))
        student.name = meta.get("name") or str(folder)
        if doc_model is None:
            doc_model = recorded_doc_model(folder, meta.get("doc_model"))
        doc = doc_model if isinstance(doc_model, SpladeModel) else SpladeModel(doc_model, device=device)
        formatter = ConversationFormatter(**meta.get("formatter", {}))
        disco = cls(student, doc, formatter=formatter, meta=meta, **kwargs)
        disco.path = Path(folder)
        return disco

    def verify(self) -> dict:
        """Hash every file of the student's folder against the sha256 its ``pt_meta.json`` records; raises
        :class:`~pyterrier_disco.CorruptFileError` naming a damaged file."""
        if getattr(self, "path", None) is None:
            raise ValueError("this DiSCo was not loaded from a folder: nothing to verify")
        return verify_student(self.path)

    def query_encoder(self, batch_size: Optional[int] = None, verbose: Optional[bool] = None) -> pt.Transformer:
        return self.conversation_encoder(self.formatter, batch_size, verbose)

    def __repr__(self):
        return f"DiSCo(query_model={self.query_model.name!r}, doc_model={self.doc_model.name!r})"


def _student_meta(folder) -> dict:
    meta_file = Path(folder) / "pt_meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{folder} is not a DiSCo student: {meta_file} is missing "
                                "(is training finished? resume it with --resume)")
    meta = read_json(meta_file, "student metadata")
    if meta.get("type") != "disco_student":
        raise ValueError(f"{folder} holds a {meta.get('type')!r} artifact, not a DiSCo student")
    return meta


def verify_student(folder) -> dict:
    """Hash every file a student's ``pt_meta.json`` records (see :meth:`DiSCo.verify`)."""
    meta = _student_meta(folder)
    if "files" not in meta:
        return {"path": str(folder), "files_hashed": 0, "checksums": False}
    return {"path": str(folder), "checksums": True,
            "files_hashed": check_files(folder, meta["files"], CorruptFileError, full=True)}


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def recorded_doc_model(folder, recorded) -> Optional[str]:
    """The document model a student records, if it may be loaded without asking: ``None`` (the embedded
    default), a hub id (``org/name``, not an existing local path) or a path inside the student's folder
    (relative to it). Anything else (an absolute path, ``..``) raises a ValueError telling how to pass it."""
    if recorded is None:
        return None
    if not isinstance(recorded, str) or not recorded:
        raise CorruptFileError(f"{Path(folder) / 'pt_meta.json'}: doc_model must be a string or null")
    inside = (Path(folder) / recorded).resolve()
    if not Path(recorded).is_absolute() and inside.is_relative_to(Path(folder).resolve()) and inside.exists():
        return str(inside)
    if _HUB_ID.fullmatch(recorded) and not Path(recorded).exists() and ".." not in recorded:
        return recorded
    raise ValueError(f"the student {folder} records the document model {recorded!r}, outside its folder: "
                     f"pass it yourself to load it (DiSCo.from_pretrained(..., doc_model={recorded!r}), "
                     "--model on the command line)")
