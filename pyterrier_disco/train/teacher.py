"""Teacher runs: retrieve with each teacher's rewrite, store the runs, and average teachers.

A teacher run is a result frame ``qid, docno, score, rank, teacher``: for each teacher (an LLM rewrite, a
human rewrite...), the SPLADE retrieval results of the rewritten query. DiSCo distils these scores into a
query encoder that reads the whole conversation.

Multi-teacher aggregation follows github Janhutter/disco-conv-splade ``setup_script/combine_distils.py``
(per query and document, the mean over the teachers whose run contains that document).
"""
import json
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import pandas as pd
import pyterrier as pt

from pyterrier_disco._errors import InputKeyError, InputTypeError
from pyterrier_disco._utils import atomic_file

RUN_COLUMNS = ("qid", "docno", "score", "rank", "teacher")
METADATA_KEY = b"pyterrier_disco.teacher_run"
AGGREGATIONS = ("mean", "min", "max")


def _rewriter(teacher: Union[str, pt.Transformer], conversations: pd.DataFrame) -> pt.Transformer:
    """A transformer that puts the teacher's rewrite into ``query``."""
    from pyterrier_disco.rewrite import Column

    if isinstance(teacher, pt.Transformer):
        return teacher
    if not isinstance(teacher, str):
        raise InputTypeError(f"a teacher must be a pt.Transformer or a column name, got {type(teacher).__name__}")
    if teacher not in conversations.columns:
        raise InputKeyError(f"teacher column {teacher!r} is not in the conversations (columns: "
                       f"{', '.join(map(str, conversations.columns))})")
    return Column(teacher)


def check_rewrites(conversations: pd.DataFrame, column: str, teacher: Optional[str] = None) -> None:
    """A rewrite teacher needs its rewrites. ``KeyError`` when the frame has no ``column``; ``ValueError``
    naming each dataset of the frame (its ``dataset`` column) whose turns all lack one, e.g. TopiOCQA's 2021
    release pooled with the human teacher. A turn missing a rewrite here and there falls back to the utterance
    with a warning (``Column``)."""
    named = f" (teacher {teacher!r})" if teacher and teacher != column else ""
    if column not in conversations.columns:
        names = ", ".join(map(str, dict.fromkeys(conversations["dataset"].dropna()))) \
            if "dataset" in conversations else ""
        raise KeyError(f"teacher column {column!r} is not in the conversations{' of ' + names if names else ''}"
                       f"{named} (columns: {', '.join(map(str, conversations.columns))})")
    values = conversations[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if not blank.any():
        return
    groups = conversations["dataset"].astype(str) if "dataset" in conversations else pd.Series("", index=values.index)
    empty = [str(d) for d, b in blank.groupby(groups, sort=False) if b.all()]
    if empty:
        where = ", ".join(d or "the conversations" for d in empty)
        raise ValueError(f"teacher column {column!r}{named}: {where} has no {column} (empty for all its turns); "
                         "leave it out of this teacher's datasets or choose another teacher")


def _datasets_of(conversations: pd.DataFrame) -> Dict[str, list]:
    if "dataset" not in conversations.columns:
        return {}
    return {"datasets": [str(d) for d in dict.fromkeys(conversations["dataset"].dropna())]}


def doc_model_metadata(doc_model) -> Dict[str, object]:
    """Identity of the document model whose vectors a run was retrieved with: name, vocab size and hash.

    ``doc_model`` is a :class:`pyterrier_disco.encoders.SpladeModel` (or anything with ``vocab`` and
    ``vocab_fingerprint``), or a dict already holding ``doc_model``/``vocab_size``/``vocab_fingerprint``.
    """
    if isinstance(doc_model, Mapping):
        missing = [k for k in ("vocab_size", "vocab_fingerprint") if k not in doc_model]
        if missing:
            raise ValueError(f"document model metadata lacks {', '.join(missing)}")
        return {"doc_model": doc_model.get("doc_model"), "vocab_size": int(doc_model["vocab_size"]),
                "vocab_fingerprint": str(doc_model["vocab_fingerprint"])}
    if not hasattr(doc_model, "vocab") or not hasattr(doc_model, "vocab_fingerprint"):
        raise TypeError(f"expected a SpladeModel (with vocab and vocab_fingerprint), got {type(doc_model).__name__}")
    return {"doc_model": str(getattr(doc_model, "name", None) or getattr(doc_model, "name_or_path", "")),
            "vocab_size": len(doc_model.vocab), "vocab_fingerprint": str(doc_model.vocab_fingerprint)}


def build_teacher_run(conversations: pd.DataFrame, teachers: Mapping[str, Union[str, pt.Transformer]], splade,
                      index, k: int = 1000, verbose: bool = True) -> pd.DataFrame:
    """Retrieve the top ``k`` documents for each teacher's rewrite of every conversation turn.

    For each teacher: rewrite (a column name copies that column into ``query``; a transformer is applied to
    the conversation frame) >> ``splade.query_encoder()`` >> ``index.retriever(num_results=k)``.

    Returns a frame ``qid, docno, score, rank, teacher`` whose ``attrs["teacher_run"]`` holds the metadata
    that :func:`save_teacher_run` stores: the document model (vocabulary size and fingerprint, checked by
    :func:`check_teacher_run`), ``k``, the teacher names, and ``teacher_details``: per teacher its ``kind``,
    ``model``, ``prompt_hash``, ``policy`` (checked by :func:`~pyterrier_disco.train.teacher_specs.check_teachers`),
    ``turns`` and ``fallbacks`` (rewrites that fell back to the utterance: empty or junk generations, missing
    rewrite values).
    """
    from .teacher_specs import teacher_info

    with pt.validate.any(conversations) as v:
        v.query_frame(extra_columns=[])
    if not teachers:
        raise ValueError("no teachers given")
    for name, teacher in teachers.items():  # before any retrieval or LLM call
        if isinstance(teacher, str):
            check_rewrites(conversations, teacher, str(name))
        else:
            _rewriter(teacher, conversations)
    runs, details = [], {}
    items = pt.tqdm(teachers.items(), desc="teachers", unit="teacher") if verbose else teachers.items()
    for name, teacher in items:
        rewriter = _rewriter(teacher, conversations)
        before = getattr(rewriter, "fallbacks", 0)
        res = (rewriter >> splade.query_encoder() >> index.retriever(num_results=k))(conversations)
        details[str(name)] = {**teacher_info(teacher), "turns": len(conversations),
                              "fallbacks": int(getattr(rewriter, "fallbacks", 0) - before)}
        run = res[["qid", "docno", "score", "rank"]].copy()
        run["teacher"] = str(name)
        runs.append(run)
    run = pd.concat(runs, ignore_index=True)
    run["qid"] = run["qid"].astype(str)
    run["docno"] = run["docno"].astype(str)
    run.attrs["teacher_run"] = {**doc_model_metadata(splade.doc_model), "k": int(k),
                                "teachers": [str(t) for t in teachers], "teacher_details": details,
                                **_datasets_of(conversations)}
    return run


def _validate_run(df: pd.DataFrame, source: str) -> None:
    missing = [c for c in RUN_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: teacher run lacks column(s) {', '.join(missing)} "
                         f"(expected {', '.join(RUN_COLUMNS)}; found {', '.join(map(str, df.columns))})")


def save_teacher_run(df: pd.DataFrame, path, metadata: Mapping = None) -> Path:
    """Write a teacher run as parquet (atomically), with its metadata in the parquet schema metadata.

    ``metadata`` defaults to ``df.attrs["teacher_run"]`` (set by :func:`build_teacher_run`); it must name
    the document model's vocabulary (``vocab_size``, ``vocab_fingerprint``) so that a run from another
    document model can be detected later.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    _validate_run(df, "save_teacher_run")
    meta = dict(metadata if metadata is not None else df.attrs.get("teacher_run") or {})
    meta.update(doc_model_metadata(meta))  # validates the vocabulary fields
    frame = df[list(RUN_COLUMNS)].copy()
    frame["qid"] = frame["qid"].astype(str)
    frame["docno"] = frame["docno"].astype(str)
    frame["teacher"] = frame["teacher"].astype(str)
    frame["score"] = frame["score"].astype("float64")
    frame["rank"] = frame["rank"].astype("int64")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta)})
    path = Path(path)
    if path.exists() and not path.is_dir() and not is_teacher_run(path):
        raise FileExistsError(f"{path} exists and is not a teacher run: it is never replaced; choose another path")
    with atomic_file(path, "wb") as f:
        pq.write_table(table, f)
    return path


def is_teacher_run(path) -> bool:
    """Whether ``path`` is a teacher-run parquet file written by :func:`save_teacher_run`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return METADATA_KEY in (pq.read_schema(path).metadata or {})
    except (OSError, pa.ArrowException):
        return False


def load_teacher_run(path) -> pd.DataFrame:
    """Read a teacher run written by :func:`save_teacher_run`; metadata in ``attrs["teacher_run"]``."""
    import pyarrow.parquet as pq

    import pyarrow as pa

    from pyterrier_disco._errors import CorruptFileError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no teacher run at {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a teacher-run parquet file")
    try:
        table = pq.read_table(path)
    except pa.ArrowException as e:
        raise CorruptFileError(f"{path} is not a readable parquet teacher run ({e})") from e
    df = table.to_pandas()
    _validate_run(df, str(path))
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: no teacher-run metadata (document model, vocabulary) in the parquet schema; "
                         f"was it written by save_teacher_run?")
    try:
        meta = json.loads(raw)
        doc_model_metadata(meta if isinstance(meta, Mapping) else {})  # the vocabulary fields must be there
    except ValueError as e:
        raise CorruptFileError(f"{path}: the teacher-run metadata is damaged or incomplete ({e}); rebuild the "
                               "run with `disco teacher-run`") from e
    df.attrs["teacher_run"] = meta
    return df


def check_teacher_run(df_or_meta: Union[pd.DataFrame, Mapping], doc_model) -> None:
    """Raise ``ValueError`` if a teacher run was retrieved with another document model (vocabulary).

    ``df_or_meta`` is a run with ``attrs["teacher_run"]`` (as :func:`load_teacher_run` returns) or that
    metadata dict; ``doc_model`` a SpladeModel or its :func:`doc_model_metadata`.
    """
    meta = df_or_meta.attrs.get("teacher_run") if isinstance(df_or_meta, pd.DataFrame) else df_or_meta
    if not meta:
        raise ValueError("the teacher run carries no metadata; cannot check its document model")
    run_meta = doc_model_metadata(meta)
    expected = doc_model_metadata(doc_model)
    if (run_meta["vocab_size"], run_meta["vocab_fingerprint"]) != \
            (expected["vocab_size"], expected["vocab_fingerprint"]):
        raise ValueError(
            f"vocabulary mismatch: the teacher run was retrieved with document model {run_meta['doc_model']!r} "
            f"(vocab size {run_meta['vocab_size']}, fingerprint {run_meta['vocab_fingerprint']}) but the "
            f"current document model is {expected['doc_model']!r} (vocab size {expected['vocab_size']}, "
            f"fingerprint {expected['vocab_fingerprint']}); rebuild the teacher run with this model")


def aggregate_teachers(run: pd.DataFrame, how: str = "mean") -> pd.DataFrame:
    """Combine several teachers' runs into one: ``qid, docno, score``, sorted by qid then score (desc).

    Per (qid, docno), ``how`` (``mean``, ``min`` or ``max``) is taken over the teachers whose run contains
    that document. A document missing from a teacher's top ``k`` is simply not counted for that teacher (no
    zero or minimum score is imputed), as in the follow-up's ``combine_distils.py``; so a document returned
    by one teacher only keeps that teacher's score. A run without a ``teacher`` column is one teacher.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")
    missing = [c for c in ("qid", "docno", "score") if c not in run.columns]
    if missing:
        raise ValueError(f"aggregate_teachers: run lacks column(s) {', '.join(missing)}")
    if "teacher" in run.columns:
        dupes = run.duplicated(["qid", "docno", "teacher"])
        if dupes.any():
            example = run.loc[dupes, ["qid", "docno", "teacher"]].iloc[0].tolist()
            raise ValueError(f"a teacher returns the same document twice for a query, e.g. {example}")
    out = (run.groupby(["qid", "docno"], sort=False, observed=True)["score"].agg(how).reset_index())
    out = out.sort_values(["qid", "score", "docno"], ascending=[True, False, True], kind="stable")
    return out.reset_index(drop=True)
