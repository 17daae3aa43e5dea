"""Query-to-query rewriters over conversation frames: the shared transformer logic, ``Column`` and
``RewriteColumns``."""
import time
import warnings
from typing import Dict, List, Optional, Sequence

import pandas as pd
import pyterrier as pt

from .._errors import InputTypeError
from .cache import RewriteCache, cache_key, open_cache
from .prompt import first_line, is_junk

REWRITE_POLICIES = ("rewrite", "utterance+rewrite")


def _texts(frame: pd.DataFrame, column: str) -> List[str]:
    values = frame[column].tolist()
    for qid, value in zip(frame["qid"], values):
        if not isinstance(value, str):
            raise InputTypeError(f"column '{column}' must hold strings, but qid {qid!r} holds "
                                 f"{type(value).__name__}: {value!r}")
    return values


def _histories(frame: pd.DataFrame) -> List[list]:
    histories = []
    for qid, history in zip(frame["qid"], frame["history"]):
        if history is None:
            history = []
        if not hasattr(history, "__iter__") or isinstance(history, (str, dict)):  # NaN (a missing value) too
            raise InputTypeError(f"column 'history' must hold lists of {{'role', 'text'}} dicts ([] or None for "
                                 f"none), but qid {qid!r} holds {type(history).__name__}: {history!r}")
        histories.append(list(history))
    return histories


class QueryRewriter(pt.Transformer):
    """Base class: keeps the input rows, moves ``query`` to ``query_0`` and writes the rewrite to ``query``.

    Subclasses set ``input_columns`` and implement ``rewrite(frame) -> list[str]`` (one per row, never
    called on an empty frame).
    """
    input_columns: Sequence[str] = ()

    def rewrite(self, frame: pd.DataFrame) -> List[str]:
        raise NotImplementedError

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        with pt.validate.any(inp) as v:
            v.query_frame(extra_columns=["query", *self.input_columns])
        rewrites = self.rewrite(inp) if len(inp) else []
        out = pt.model.push_queries(inp)
        out["query"] = pd.Series(rewrites, index=out.index, dtype=object)
        return out

    def as_column(self, name: str) -> "RewriteColumns":
        """This rewriter as a transformer that adds its rewrite as column ``name`` (``query`` untouched)."""
        return RewriteColumns({name: self})


class Column(QueryRewriter):
    """Uses a rewrite already in the frame, e.g. ``Column('human_rewrite')`` or ``Column('automatic_rewrite')``.

    A missing, empty or whitespace-only value in the column falls back to the utterance, with a warning;
    ``fallbacks`` counts them.
    """

    def __init__(self, column: str):
        if not isinstance(column, str) or not column:
            raise ValueError("Column needs the name of a rewrite column, e.g. Column('human_rewrite')")
        self.column = column
        self.input_columns = (column,)
        self.fallbacks = 0

    def rewrite(self, frame: pd.DataFrame) -> List[str]:
        values = frame[self.column].tolist()
        missing = [i for i, v in enumerate(values)
                   if v is None or (isinstance(v, float) and pd.isna(v)) or (isinstance(v, str) and not v.strip())]
        if missing:
            qids = [frame["qid"].iloc[i] for i in missing]
            warnings.warn(f"{len(missing)} rows have no '{self.column}' (qids {qids[:5]}...): using the utterance")
            self.fallbacks += len(missing)
            for i in missing:
                values[i] = frame["query"].iloc[i]
        frame = frame.assign(**{self.column: values})
        return _texts(frame, self.column)

    def __repr__(self):
        return f"Column({self.column!r})"


class GenerativeRewriter(QueryRewriter):
    """A rewriter backed by a generative model, with a persistent cache of generations.

    Subclasses implement ``model_inputs(utterances, histories) -> list[str]``, ``generate(inputs) -> list[str]``
    (raw generations) and ``cache_settings() -> dict`` (everything besides the input that changes the output).
    ``llm_calls`` counts generations actually computed (not served from the cache); ``fallbacks`` counts
    rows whose rewrite was unusable (empty, junk, empty utterance) and fell back to the utterance.
    """
    input_columns = ("history",)
    kind = "generative"  # the teacher kind a teacher run records ("llm", "t5")

    def __init__(self, *, policy: str = "rewrite", batch_size: int = 8, cache=True,
                 verbose: bool = False):
        if policy not in REWRITE_POLICIES:
            raise ValueError(f"unknown rewrite policy {policy!r}; expected one of {REWRITE_POLICIES}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.policy = policy
        self.batch_size = batch_size
        self.verbose = verbose
        self.cache: Optional[RewriteCache] = open_cache(cache)
        self.llm_calls = 0
        self.fallbacks = 0
        self.generation_seconds = 0.0  # model time of the generations used, cached ones as recorded

    def model_inputs(self, utterances: List[str], histories: List[list]) -> List[str]:
        raise NotImplementedError

    def generate(self, inputs: List[str]) -> List[str]:
        raise NotImplementedError

    def cache_settings(self) -> dict:
        raise NotImplementedError

    def prompt_hash(self) -> str:
        """A short hash of how a turn becomes the model's input (template, context policy)."""
        raise NotImplementedError

    def teacher_info(self) -> dict:
        """What makes this rewriter's rewrites what they are, as a teacher run records it: ``kind``,
        ``model``, ``prompt_hash``, ``policy`` and the generation settings."""
        settings = self.cache_settings()
        return {"kind": self.kind, "model": self.model_name, "prompt_hash": self.prompt_hash(),
                "policy": self.policy, "settings": settings}

    def generations(self, inputs: Sequence[str]) -> Dict[str, str]:
        """Raw generations for distinct inputs: from the cache where present, else from the model."""
        inputs = list(dict.fromkeys(inputs))
        settings = self.cache_settings()
        keys = {text: cache_key(settings, text) for text in inputs}
        cached = self.cache.get_many_timed(keys.values()) if self.cache is not None else {}
        found = {text: cached[keys[text]][0] for text in inputs if keys[text] in cached}
        self.generation_seconds += sum(cached[keys[t]][1] or 0.0 for t in found)
        todo = [text for text in inputs if text not in found]
        batches = range(0, len(todo), self.batch_size)
        for start in pt.tqdm(batches, desc=type(self).__name__, unit="batch", disable=not self.verbose):
            batch = todo[start:start + self.batch_size]
            t0 = time.perf_counter()
            outputs = self.generate(batch)
            seconds = time.perf_counter() - t0
            if len(outputs) != len(batch):
                raise RuntimeError(f"the model returned {len(outputs)} generations for {len(batch)} inputs")
            self.llm_calls += len(batch)
            self.generation_seconds += seconds
            new = dict(zip(batch, outputs))
            if self.cache is not None:
                self.cache.put_many({keys[text]: out for text, out in new.items()}, seconds / len(batch))
            found.update(new)
        return found

    def rewrite(self, frame: pd.DataFrame) -> List[str]:
        originals = _texts(frame, "query")
        utterances = [" ".join(u.split()) for u in originals]
        histories = _histories(frame)
        rows = [i for i, u in enumerate(utterances) if u]
        if len(rows) < len(utterances):
            warnings.warn(f"{len(utterances) - len(rows)} rows have an empty utterance: kept as they are, "
                          "not rewritten")
            self.fallbacks += len(utterances) - len(rows)
        inputs = self.model_inputs([utterances[i] for i in rows], [histories[i] for i in rows])
        generated = self.generations(inputs)
        rewrites = list(originals)  # a fallback is the original utterance, untouched
        for i, text in zip(rows, inputs):
            rewrite = first_line(generated[text])
            if is_junk(rewrite):
                self.fallbacks += 1
                continue  # keep the utterance
            rewrites[i] = rewrite if self.policy == "rewrite" else f"{utterances[i]} {rewrite}"
        return rewrites


class RewriteColumns(pt.Transformer):
    """Several rewriters side by side, each adding its rewrite as its own column (``query`` untouched).

    ``RewriteColumns({"llm_rewrite": LLMRewriter(), "t5_rewrite": T5Rewriter()})`` gives one teacher
    query column per rewriter.
    """

    def __init__(self, rewriters: Dict[str, pt.Transformer]):
        if not rewriters:
            raise ValueError("RewriteColumns needs at least one {column_name: rewriter}")
        for name in rewriters:
            if name in ("qid", "query", "query_0", "history"):
                raise ValueError(f"column name {name!r} is reserved; choose another name for the rewrite")
        self.rewriters = dict(rewriters)

    def subtransformers(self) -> Dict[str, pt.Transformer]:
        return dict(self.rewriters)

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        with pt.validate.any(inp) as v:
            v.query_frame(extra_columns=["query", *sorted({c for r in self.rewriters.values()
                                                         for c in getattr(r, "input_columns", ())})])
        out = inp.copy()
        for name, rewriter in self.rewriters.items():
            rewritten = rewriter(inp)
            if len(rewritten) != len(inp):
                raise RuntimeError(f"rewriter {name!r} returned {len(rewritten)} rows for {len(inp)}")
            out[name] = pd.Series(rewritten["query"].tolist(), index=out.index, dtype=object)
        return out

    def __repr__(self):
        return f"RewriteColumns({self.rewriters!r})"
