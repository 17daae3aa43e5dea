"""A trained DiSCo student: the conversation query encoder with its document-side SPLADE."""
from pathlib import Path
from typing import Optional

import pyterrier as pt

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
    def from_pretrained(cls, folder, *, device: Optional[str] = None, **kwargs) -> "DiSCo":
        """Load a student folder written by :func:`pyterrier_disco.train.train`."""
        import json

        from .conversation import ConversationFormatter

        meta_file = Path(folder) / "pt_meta.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{folder} is not a DiSCo student: {meta_file} is missing "
                                    "(is training finished? resume it with --resume)")
        meta = json.loads(meta_file.read_text())
        if meta.get("type") != "disco_student":
            raise ValueError(f"{folder} holds a {meta.get('type')!r} artifact, not a DiSCo student")
        student = SpladeModel(folder, device=device, max_length=meta.get("max_length", DEFAULT_MAX_LENGTH))
        student.name = meta.get("name") or str(folder)
        doc = SpladeModel(meta.get("doc_model"), device=device)
        formatter = ConversationFormatter(**meta.get("formatter", {}))
        return cls(student, doc, formatter=formatter, meta=meta, **kwargs)

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
        return self.conversation_encoder(self.formatter, batch_size, verbose)

    def __repr__(self):
        return f"DiSCo(query_model={self.query_model.name!r}, doc_model={self.doc_model.name!r})"
