"""A DiSCo student (the conversation query encoder with its document-side SPLADE), as a ``pt.Artifact``.

Two folder layouts load, from disk or from the Hugging Face hub:

- a student trained by this project: masked-LM files plus ``pt_meta.json`` (type ``disco_student``, format
  ``hf``), which names the document model, the token limit and the input format it was trained with;
- the authors' released students (``slupart/splade-disco-topiocqa-mistral`` and the rest of their collection):
  plain masked-LM folders without ``pt_meta.json``. The paper's settings then apply: the frozen document
  encoder ``naver/splade-cocondenser-ensembledistil`` (Sec. 4.3, footnote 4), the input
  ``q_n [SEP] a_{n-1} [SEP] q_{n-1} [SEP] ... [SEP] q_0`` (the model cards; :class:`ConversationFormatter`'s
  default) and 256 tokens.

Keyword arguments (``doc_model``, ``max_length``, ``formatter``, ``utterance_weight``) override either.
``utterance_weight`` (``pt_meta.json``; 0 for the authors' students) adds that weight times the document
model's vector of the raw utterance to the student's query vector (``TrainConfig.utterance_weight``).
"""
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import pyterrier as pt

from ._checksums import check_files
from ._errors import CorruptFileError
from ._utils import read_json
from .conversation import ConversationFormatter
from .encoders import DEFAULT_MAX_LENGTH, Splade, SpladeModel, _as_model, utterance_weight_of

PAPER_DOC_MODEL = "naver/splade-cocondenser-ensembledistil"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]  # config, tokenizer, weights (no pickles)


@dataclass
class StudentSettings:
    """What :class:`DiSCo` loads from a folder, resolved without loading any model."""
    name: str
    doc_model: Union[str, SpladeModel, None]  # None: the embedded SPLADE-tiny
    max_length: int
    formatter: ConversationFormatter
    meta: dict = field(default_factory=dict)  # the folder's pt_meta.json ({} in the authors' layout)


def read_meta(folder) -> dict:
    """The student's ``pt_meta.json``, or ``{}`` for a plain masked-LM folder (the authors' layout)."""
    folder = Path(folder)
    meta_file = folder / "pt_meta.json"
    if not meta_file.exists():
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{folder} is not a DiSCo student: it has neither pt_meta.json nor a masked-LM "
                                    "config.json (is training finished? resume it with --resume)")
        return {}
    meta = read_json(meta_file, "student metadata")
    if meta.get("type") != DiSCo.ARTIFACT_TYPE:
        raise ValueError(f"{folder} holds a {meta.get('type')!r} artifact, not a DiSCo student")
    return meta


def student_settings(folder, *, name: Optional[str] = None, doc_model=None, max_length: Optional[int] = None,
                     formatter: Optional[ConversationFormatter] = None) -> StudentSettings:
    """The settings of the student in ``folder``: its ``pt_meta.json``, else the paper's; arguments win.

    In ``pt_meta.json``, ``"doc_model": null`` names the embedded SPLADE-tiny; without the key (or the file) the
    document model is :data:`PAPER_DOC_MODEL`. A recorded document model outside the student's folder is only
    loaded when passed as ``doc_model`` (see :func:`recorded_doc_model`).
    """
    meta = read_meta(folder)
    if doc_model is None:
        doc_model = recorded_doc_model(folder, meta["doc_model"]) if "doc_model" in meta else PAPER_DOC_MODEL
    length = max_length or meta.get("max_length") or DEFAULT_MAX_LENGTH
    if formatter is None:
        kwargs = dict(meta.get("formatter", {}))
        if max_length is not None or "max_length" not in kwargs:  # a limit asked for applies to the input text too
            kwargs["max_length"] = length
        formatter = ConversationFormatter(**kwargs)
    return StudentSettings(name=name or meta.get("name") or str(folder),
                           doc_model=doc_model,
                           max_length=length, formatter=formatter, meta=meta)


class DiSCo(pt.Artifact, Splade):
    """A DiSCo student: ``query_encoder()`` encodes a conversation frame (``qid, query, history``) into
    ``query_toks`` for any retriever over documents encoded by ``doc_encoder()``.

    >>> disco = DiSCo.from_pretrained("runs/student")                        # trained here
    >>> disco = DiSCo.from_pretrained("slupart/splade-disco-topiocqa-mistral")  # the authors' (needs the hub)
    >>> disco = pt.Artifact.load("runs/student")                              # the same, as an artifact
    >>> pipeline = disco.query_encoder() >> index.retriever(num_results=100)
    >>> pipeline(pyterrier_disco.conversations("ikat/2023/train"))

    ``DiSCo(folder)`` loads a folder; ``doc_model``, ``max_length`` and ``formatter`` override what the folder
    says (see :func:`student_settings`); ``name`` names the query model (default: the folder's). As an
    artifact it has ``to_hf``/``from_hf``: a folder in the authors' layout is packaged with a ``pt_meta.json``
    holding the settings it was loaded with.
    """
    ARTIFACT_TYPE = "disco_student"
    ARTIFACT_FORMAT = "hf"
    ARTIFACT_PACKAGE_HINT = "pyterrier-disco"

    def __init__(self, path, *, doc_model=None, max_length: Optional[int] = None,
                 formatter: Optional[ConversationFormatter] = None, name: Optional[str] = None,
                 utterance_weight: Optional[float] = None, device: Optional[str] = None, batch_size: int = 32,
                 verbose: bool = False):
        super().__init__(path)
        settings = student_settings(path, name=name, doc_model=doc_model, max_length=max_length, formatter=formatter)
        check_files(path, settings.meta.get("files", {}), CorruptFileError)
        query = SpladeModel(path, device=device, max_length=settings.max_length)
        query.name = settings.name
        self._wrap(query, _as_model(settings.doc_model, device), settings.formatter, settings.meta,
                   utterance_weight, device=device, batch_size=batch_size, verbose=verbose)

    @classmethod
    def from_models(cls, query_model: SpladeModel, doc_model: Optional[SpladeModel] = None, *,
                    formatter: Optional[ConversationFormatter] = None, meta: Optional[dict] = None,
                    utterance_weight: Optional[float] = None, path=pt.Artifact.NO_PATH, **kwargs) -> "DiSCo":
        """A student over models already loaded (``doc_model=None``: the query model on both sides), e.g. the
        model a training run just saved at ``path``; ``kwargs`` go to :class:`Splade`."""
        self = cls.__new__(cls)
        pt.Artifact.__init__(self, path)
        self._wrap(query_model, doc_model, formatter, meta or {}, utterance_weight, **kwargs)
        return self

    def _wrap(self, query_model, doc_model, formatter, meta: dict, utterance_weight: Optional[float],
              **kwargs) -> None:
        Splade.__init__(self, query_model, doc_model, **kwargs)
        self.formatter = formatter or ConversationFormatter(max_length=self.query_model.max_length)
        self.meta = meta
        self.utterance_weight = utterance_weight_of(meta.get("utterance_weight") if utterance_weight is None
                                                    else utterance_weight)

    @classmethod
    def from_pretrained(cls, name_or_path, *, revision: Optional[str] = None, **kwargs) -> "DiSCo":
        """A student from a local folder or a Hugging Face hub model id (either layout); ``revision``: the hub
        branch, tag or commit. ``kwargs`` as :class:`DiSCo`."""
        folder = Path(name_or_path)
        if folder.is_dir():
            return cls(folder, **kwargs)
        if not _HUB_ID.fullmatch(str(name_or_path)):
            raise FileNotFoundError(f"no DiSCo student at {name_or_path}: not a folder, nor a hub id (owner/name)")
        kwargs.setdefault("name", str(name_or_path))
        return cls(_hub_folder(str(name_or_path), revision), **kwargs)

    def verify(self) -> dict:
        """Hash every file of the student's folder against the sha256 its ``pt_meta.json`` records; raises
        :class:`~pyterrier_disco.CorruptFileError` naming a damaged file."""
        if self.path is pt.Artifact.NO_PATH or self.path is None:
            raise ValueError("this DiSCo was not loaded from a folder: nothing to verify")
        return verify_student(self.path)

    @classmethod
    def default(cls, *, device: Optional[str] = None, **kwargs) -> "DiSCo":
        """The student shipped with the package, loaded offline: SPLADE-tiny trained by the project's recipe
        on the MIT-licensed TREC CAsT topics (see :mod:`pyterrier_disco.default_student`).

        >>> disco = DiSCo.default()
        >>> (disco.query_encoder() >> index.retriever(num_results=100))(conversations)
        """
        from .default_student import load_default

        return load_default(device=device, **kwargs)

    def query_encoder(self, batch_size: Optional[int] = None, verbose: Optional[bool] = None) -> pt.Transformer:
        return self.conversation_encoder(self.formatter, batch_size, verbose, self.utterance_weight)

    def _build_metadata(self) -> dict:
        # written into packages (to_hf, build_package) of folders without pt_meta.json: the settings in use
        return {**super()._build_metadata(), "name": self.query_model.name, "doc_model": self.doc_model.source,
                "max_length": self.query_model.max_length, "formatter": self.formatter.settings(),
                "utterance_weight": self.utterance_weight}

    def __repr__(self):
        return f"DiSCo(query_model={self.query_model.name!r}, doc_model={self.doc_model.name!r})"


def _hub_folder(repo_id: str, revision: Optional[str]) -> Path:
    """The local snapshot of a hub model: config, tokenizer and safetensors weights (PyTorch weights only when
    the repository has no safetensors)."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_FILES))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(repo_id, revision=revision,
                                            allow_patterns=_HUB_FILES + ["pytorch_model.bin"]))
    except OSError as e:  # offline, unknown repository, network error: huggingface_hub's messages omit the id
        raise FileNotFoundError(f"{repo_id!r} is neither a folder here nor a model we could get from the Hugging "
                                f"Face hub: {e}") from e
    return folder


def verify_student(folder) -> dict:
    """Hash every file a student's ``pt_meta.json`` records (see :meth:`DiSCo.verify`)."""
    meta = read_meta(folder)
    if "files" not in meta:
        return {"path": str(folder), "files_hashed": 0, "checksums": False}
    return {"path": str(folder), "checksums": True,
            "files_hashed": check_files(folder, meta["files"], CorruptFileError, full=True)}


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
