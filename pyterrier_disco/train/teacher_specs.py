"""Teachers named with their model: ``human,llm=mistralai/Mistral-7B-Instruct-v0.2,t5=castorini/t5-base-canard``.

A teacher spec is ``kind`` or ``kind=model``:

- ``human`` / ``manual`` / ``automatic`` (the ``human_rewrite`` / ``automatic_rewrite`` columns) or any other
  column of the conversation frame: a rewrite the dataset provides;
- ``llm`` (the packaged SmolLM2-135M-Instruct GGUF) or ``llm=MODEL``: an
  :class:`~pyterrier_disco.rewrite.LLMRewriter` with the paper's Table 2 one-shot prompt and ``policy="rewrite"``
  (the teacher query is the rewrite alone, DiSCo Section 3: "rewrite the conversation utterance, into q_rw,
  which will be encoded E_q(q_rw)");
- ``t5`` or ``t5=MODEL``: a :class:`~pyterrier_disco.rewrite.T5Rewriter` (default ``castorini/t5-base-canard``).

``MODEL`` is a hub id (``owner/name``), a local model folder, a ``.gguf`` file, or a short name of the paper's
models (footnote 2: ``llama`` = meta-llama/Meta-Llama-3.1-8B-Instruct, ``mistral`` =
mistralai/Mistral-7B-Instruct-v0.2, ``canard`` = castorini/t5-base-canard) or ``smollm2`` (the packaged GGUF).
A teacher's name in a run is its canonical spec (short names expanded), e.g.
``llm=mistralai/Mistral-7B-Instruct-v0.2``; the run's metadata records each teacher's model, prompt hash,
policy and fallback count, and :func:`check_teachers` refuses a run built with another model or prompt.
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Union

import pandas as pd
import pyterrier as pt

COLUMN_ALIASES = {"human": "human_rewrite", "manual": "human_rewrite", "automatic": "automatic_rewrite"}
KNOWN_MODELS = {
    "llm": {"llama": "meta-llama/Meta-Llama-3.1-8B-Instruct", "mistral": "mistralai/Mistral-7B-Instruct-v0.2",
            "smollm2": None},
    "t5": {"canard": "castorini/t5-base-canard"},
}
DEFAULT_MODELS = {"llm": None, "t5": "castorini/t5-base-canard"}  # llm: the packaged SmolLM2 GGUF
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMPARED = ("kind", "model", "prompt_hash", "policy")  # what must agree between a run and the teachers asked for


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher: ``kind`` (``column``, ``llm``, ``t5``) and ``source`` (the column, or the model; ``None``
    for the packaged LLM)."""
    kind: str
    source: Optional[str]
    alias: Optional[str] = None  # the name given for a column teacher (``human``)

    @property
    def name(self) -> str:
        if self.kind == "column":
            return self.alias or self.source
        return self.kind if self.source is None or self.source == DEFAULT_MODELS[self.kind] else \
            f"{self.kind}={self.source}"

    def build(self, **llm_kwargs) -> Union[str, pt.Transformer]:
        """The column name, or the rewriter (LLM teachers with ``policy="rewrite"`` unless overridden; a T5
        teacher takes the ``device`` and ``cache`` of ``llm_kwargs``)."""
        if self.kind == "column":
            return self.source
        if self.kind == "llm":
            from pyterrier_disco.rewrite import LLMRewriter
            return LLMRewriter(self.source, **{"policy": "rewrite", **llm_kwargs})
        from pyterrier_disco.rewrite import T5Rewriter
        shared = {k: llm_kwargs[k] for k in ("device", "cache") if k in llm_kwargs}
        return T5Rewriter(self.source or DEFAULT_MODELS["t5"], **shared)


def _known(kind: str) -> str:
    names = ", ".join(f"{k} ({v or 'the packaged SmolLM2-135M-Instruct GGUF'})" for k, v in KNOWN_MODELS[kind].items())
    return f"known {kind} models: {names}; or a hub id (owner/name), a local model folder or a .gguf file"


def _model(kind: str, text: str) -> Optional[str]:
    if text in KNOWN_MODELS[kind]:
        return KNOWN_MODELS[kind][text]
    if text.endswith(".gguf") or os.sep in text and not _HUB_ID.match(text) or text.startswith("."):
        if not os.path.exists(text):
            raise FileNotFoundError(f"teacher {kind}={text}: no such model file or folder; {_known(kind)}")
        return text
    if os.path.isdir(text) or _HUB_ID.match(text):
        return text
    raise ValueError(f"unknown model {text!r} for teacher {kind}; {_known(kind)}")


def parse_teacher(text: str, columns: Sequence[str] = ()) -> TeacherSpec:
    """One spec (``human``, ``llm``, ``llm=mistral``, ``t5=castorini/t5-base-canard``, a column name)."""
    kind, sep, model = (part.strip() for part in str(text).partition("="))
    if kind in KNOWN_MODELS:
        if sep and not model:
            raise ValueError(f"teacher {text!r}: give a model after '=', or write {kind} alone; {_known(kind)}")
        return TeacherSpec(kind, _model(kind, model) if model else DEFAULT_MODELS[kind])
    if sep:
        raise ValueError(f"unknown teacher kind {kind!r} in {text!r}: only llm=MODEL and t5=MODEL take a model")
    column = COLUMN_ALIASES.get(kind, kind)
    if column not in columns:
        raise ValueError(f"unknown teacher {kind!r}: known teachers are human, manual, automatic (rewrite "
                         f"columns), llm[=MODEL], t5[=MODEL], or a column of the conversations "
                         f"({', '.join(map(str, columns)) or 'none given'})")
    return TeacherSpec("column", column, alias=kind)


def parse_teachers(names: Union[str, Sequence[str]], columns: Sequence[str] = ()) -> List[TeacherSpec]:
    """Specs from a comma-separated string or a list; two specs naming the same teacher are an error."""
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    specs = [parse_teacher(n, columns) for n in (str(n).strip() for n in names) if n]
    if not specs:
        raise ValueError("no teachers given")
    seen = [s.name for s in specs]
    repeated = sorted({n for n in seen if seen.count(n) > 1})
    if repeated:
        raise ValueError(f"teacher(s) given twice: {', '.join(repeated)}")
    return specs


def resolve_teachers(names, conversations: pd.DataFrame, **llm_kwargs) -> Dict[str, Union[str, pt.Transformer]]:
    """``{canonical name: column name or rewriter}`` for teacher specs (see the module docstring);
    ``llm_kwargs`` go to the LLM rewriters (``backend``, ``device``, ``cache``, ``prompt``, ...). A column teacher
    whose column is empty for a whole dataset of the frame is refused, naming the dataset."""
    from .teacher import check_rewrites

    teachers = {s.name: s.build(**llm_kwargs) for s in parse_teachers(names, list(map(str, conversations.columns)))}
    for name, teacher in teachers.items():
        if isinstance(teacher, str):
            check_rewrites(conversations, teacher, name)
    return teachers


def teacher_info(teacher: Union[str, pt.Transformer]) -> dict:
    """What a teacher run records about a teacher besides its fallbacks: ``kind``, ``model`` (for a column
    teacher, the column), ``prompt_hash`` and ``policy`` (None where they do not apply)."""
    if isinstance(teacher, str):
        return {"kind": "column", "model": teacher, "prompt_hash": None, "policy": None}
    info = getattr(teacher, "teacher_info", None)
    if callable(info):
        return dict(info())
    if hasattr(teacher, "column"):  # rewrite.Column
        return {"kind": "column", "model": teacher.column, "prompt_hash": None, "policy": None}
    return {"kind": "transformer", "model": repr(teacher), "prompt_hash": None, "policy": None}


def _describe(info: Mapping) -> str:
    return ", ".join(f"{k} {info.get(k)!r}" for k in COMPARED if info.get(k) is not None) or "no details"


def check_teachers(df_or_meta: Union[pd.DataFrame, Mapping], teachers: Mapping[str, object]) -> None:
    """Raise ``ValueError`` unless the run holds every teacher of ``teachers`` (name -> column or rewriter,
    as :func:`resolve_teachers` gives) built with the same kind, model, prompt hash and policy; the message
    names what the run was built with and what was asked for."""
    meta = df_or_meta.attrs.get("teacher_run") if isinstance(df_or_meta, pd.DataFrame) else df_or_meta
    meta = meta or {}
    details = meta.get("teacher_details")
    if details is None:
        raise ValueError("the teacher run records no teacher details (model, prompt hash); it was written by an "
                         "older version: rebuild it with `disco teacher-run`")
    for name, teacher in teachers.items():
        if name not in details:
            raise ValueError(f"the teacher run has no teacher {name!r}; it holds {', '.join(details) or 'none'}")
        asked, built = teacher_info(teacher), details[name]
        if any(asked.get(k) != built.get(k) for k in COMPARED):
            raise ValueError(f"teacher {name!r}: the run was built with {_describe(built)}, but "
                             f"{_describe(asked)} was asked for; rebuild the teacher run or ask for the "
                             f"teacher it holds")
