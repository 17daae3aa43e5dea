"""Comparing conversational systems: effectiveness (one ``pt.Experiment``) next to efficiency.

A system is a query encoder (possibly after a rewriter) followed by the same sparse retriever, or a fusion
of such systems. Each is run once, stage by stage, so that the table reports query length, FLOPs (Eq. 7 of
the DiSCo paper), time per query and LLM calls per query beside R@100, R@10, RR and nDCG@3, with paired
t-tests against a baseline (Bonferroni-corrected).
"""
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import pyterrier as pt
from pyterrier.measures import RR, R, nDCG

from ._utils import atomic_file
from .efficiency import flops
from .fusion import fuse

MEASURES = [R @ 100, R @ 10, RR, nDCG @ 3]
MEASURE_NAMES = [str(m) for m in MEASURES]
SYSTEM_NAMES = ("raw", "fc", "human", "llm", "disco", "fusion")


@dataclass
class System:
    """``rewriter`` (optional) >> ``encoder`` (writes ``query_toks``) >> the shared retriever."""
    name: str
    label: str
    encoder: pt.Transformer
    rewriter: Optional[pt.Transformer] = None
    parts: List["System"] = field(default_factory=list)  # non-empty: a fusion of these systems

    @property
    def llm_calls_per_query(self) -> float:
        """LLM generations this system needs for one query at search time."""
        if self.parts:
            return sum(p.llm_calls_per_query for p in self.parts)
        return 1.0 if hasattr(self.rewriter, "llm_calls") else 0.0


@dataclass
class Run:
    """What running a system produced: results, per-topic query lengths, FLOPs and seconds per stage.

    ``seconds["rewrite"]`` is the larger of the measured rewriting time and the model time recorded for the
    generations used, so that rewrites served from the cache still count what they cost to make. For a fusion,
    ``seconds`` sums each stage over the fused pipelines and ``parallel_seconds`` is the slowest pipeline plus
    the fusing: the latency when the pipelines run in parallel (the DiSCo paper's footnote 5).
    """
    results: pd.DataFrame
    query_lengths: np.ndarray
    flops: float
    seconds: Dict[str, float]
    parallel_seconds: Optional[float] = None

    @property
    def latency_seconds(self) -> float:
        """Seconds for all topics: the parallel latency of a fusion, else the sum of the stages."""
        return self.parallel_seconds if self.parallel_seconds is not None else sum(self.seconds.values())


def standard_systems(names: Sequence[str], splade, *, students: Optional[Mapping[str, object]] = None,
                     llm=None, fusion_of: Optional[str] = None) -> List[System]:
    """The systems of the DiSCo comparison, by short name.

    ``raw``: SPLADE on the utterance; ``fc``: SPLADE on the full conversation (untrained); ``human``: human
    rewrite >> SPLADE; ``llm``: LLM rewrite >> SPLADE; ``disco``: each student of ``students``
    (name -> :class:`~pyterrier_disco.DiSCo`); ``fusion``: the student ``fusion_of`` (default: the last one)
    fused with the LLM pipeline.
    """
    from .rewrite import Column

    students = dict(students or {})
    unknown = [n for n in names if n not in SYSTEM_NAMES]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEM_NAMES)}")
    if ("llm" in names or "fusion" in names) and llm is None:
        raise ValueError("the llm and fusion systems need an LLM rewriter")
    if ("disco" in names or "fusion" in names) and not students:
        raise ValueError("the disco and fusion systems need a trained student (--student DIR)")
    llm_system = System("llm", "LLM rewrite >> SPLADE", splade.query_encoder(), rewriter=llm)
    out = []
    for name in names:
        if name == "raw":
            out.append(System("raw", "SPLADE (raw utterance)", splade.query_encoder()))
        elif name == "fc":
            out.append(System("fc", "SPLADE (full context, untrained)", splade.conversation_encoder()))
        elif name == "human":
            out.append(System("human", "human rewrite >> SPLADE", splade.query_encoder(),
                              rewriter=Column("human_rewrite")))
        elif name == "llm":
            out.append(llm_system)
        elif name == "disco":
            for student_name, student in students.items():
                out.append(System(student_name, f"DiSCo ({student_name})", student.query_encoder()))
        elif name == "fusion":
            key = fusion_of or list(students)[-1]
            student = System(key, f"DiSCo ({key})", students[key].query_encoder())
            out.append(System("fusion", f"DiSCo ({key}) + LLM fusion", student.encoder,
                              parts=[student, llm_system]))
    return out


def _needs_model(rewriter, topics: pd.DataFrame) -> bool:
    """Whether rewriting ``topics`` runs ``rewriter``'s model: a generative rewriter without a cache, or with
    some of these generations missing from it. Other rewriters (e.g. ``Column``) have no model."""
    from .rewrite.base import GenerativeRewriter, _histories
    from .rewrite.cache import cache_key

    if not isinstance(rewriter, GenerativeRewriter) or "history" not in topics.columns:
        return False  # no model, or a frame the rewriter refuses with its own error
    if rewriter.cache is None:
        return True
    rows = [i for i, u in enumerate(topics["query"]) if isinstance(u, str) and u.split()]
    if not rows:
        return False
    histories = _histories(topics)
    inputs = rewriter.model_inputs([" ".join(topics["query"].iloc[i].split()) for i in rows],
                                   [histories[i] for i in rows])
    settings = rewriter.cache_settings()
    keys = {cache_key(settings, text) for text in inputs}
    return len(rewriter.cache.get_many_timed(keys)) < len(keys)


def warm_up_rewriter(rewriter, topics: pd.DataFrame) -> bool:
    """Load ``rewriter``'s model before a timed run, so that ms per query leaves out the model loading.

    A rewriter with a ``warm_up()`` method has it called; a generative rewriter (LLM, T5) that will generate
    for ``topics`` runs one untimed, uncounted generation (loading the model and its tokenizer). Rewrites
    all served from the cache load nothing. Returns True when something was warmed up.
    """
    hook = getattr(rewriter, "warm_up", None)
    if callable(hook):
        hook()
        return True
    if not _needs_model(rewriter, topics):
        return False
    rewriter.generate(rewriter.model_inputs(["warm-up"], [[]]))  # neither cached nor counted in llm_calls
    return True


def run_system(system: System, topics: pd.DataFrame, retriever: pt.Transformer, p_doc: Mapping[str, float]) -> Run:
    """Run one system stage by stage (rewrite, encode, retrieve), timing each stage."""
    if system.parts:
        runs = [run_system(p, topics, retriever, p_doc) for p in system.parts]
        t0 = time.perf_counter()
        fused = fuse(*[r.results for r in runs])
        seconds = {k: sum(r.seconds.get(k, 0.0) for r in runs) for k in ("rewrite", "encode", "retrieve")}
        seconds["fuse"] = time.perf_counter() - t0
        parallel = max(r.latency_seconds for r in runs) + seconds["fuse"]
        return Run(fused, sum(r.query_lengths for r in runs), sum(r.flops for r in runs), seconds, parallel)
    seconds = {}
    frame = topics
    if system.rewriter is not None:
        before = getattr(system.rewriter, "generation_seconds", 0.0)
        t0 = time.perf_counter()
        frame = system.rewriter(frame)
        measured = time.perf_counter() - t0
        seconds["rewrite"] = max(measured, getattr(system.rewriter, "generation_seconds", 0.0) - before)
    t0 = time.perf_counter()
    encoded = system.encoder(frame)
    seconds["encode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = retriever(encoded)
    seconds["retrieve"] = time.perf_counter() - t0
    toks = list(encoded["query_toks"])
    return Run(results, np.array([len(t) for t in toks]), flops(toks, p_doc), seconds)


def compare(systems: Sequence[System], topics: pd.DataFrame, qrels: pd.DataFrame, index, *,
            num_results: int = 1000, baseline: Optional[str] = "raw", vocab: Optional[str] = None,
            measures: Optional[Sequence] = None, verbose: bool = True):
    """Run the systems on ``topics`` and evaluate them in one ``pt.Experiment``.

    Returns ``(summary, per_turn)``: one row per system (measures, p-values against ``baseline`` with
    Bonferroni correction, ``q_len``, ``FLOPs``, ``ms_per_query``, ``ms_per_query_sum``,
    ``llm_calls_per_query``, ``<stage>_ms_per_query``), and one row per system and turn (``system, qid, turn``,
    the measures, ``q_len``) for plots by conversation depth. ``ms_per_query`` covers rewriting, encoding and
    retrieval; for a fusion it is the slower of its pipelines plus the fusing, as they can run in parallel
    (the paper's footnote 5: "we report the maximum execution time of the two"), and ``ms_per_query_sum`` is
    the time of running them one after the other (equal to ``ms_per_query`` for other systems). LLM rewrites
    served from the rewrite cache count with the generation time recorded when they were made. The index, the
    encoders and the rewriters' models are loaded (warmed up) before timing. ``vocab``: the document encoder's
    vocabulary fingerprint, checked against the index's (default: the fingerprint the project's encoders stamp
    on their output). ``measures``: PyTerrier measures (default R@100, R@10, RR, nDCG@3, the paper's; RR is MRR
    without a cutoff, as the paper's tables; add ``RR@10`` for the MRR@10 the follow-up reports).
    """
    measures = list(measures or MEASURES)
    if len(topics) == 0:
        raise ValueError("no topics to evaluate")
    retriever = index.retriever(num_results=num_results, vocab=vocab)
    p_doc = index.term_probabilities()
    retriever(pd.DataFrame({"qid": ["warm-up"], "query_toks": [{}]}))  # load the index before timing
    warmed = set()
    for system in systems:
        for part in system.parts or [system]:
            part.encoder(topics.head(2))
            if part.rewriter is not None and id(part.rewriter) not in warmed:
                warmed.add(id(part.rewriter))
                warm_up_rewriter(part.rewriter, topics)
    runs: Dict[str, Run] = {}
    for system in pt.tqdm(systems, desc="systems", unit="system", disable=not verbose):
        runs[system.name] = run_system(system, topics, retriever, p_doc)
    names = [s.name for s in systems]
    base = names.index(baseline) if baseline in names else None
    experiment = pt.Experiment([runs[n].results for n in names], topics, qrels, eval_metrics=measures,
                               names=names, baseline=base, correction="bonferroni" if base is not None else None)
    per_query = pt.Experiment([runs[n].results for n in names], topics, qrels, eval_metrics=measures,
                              names=names, perquery=True)
    rows = []
    for system in systems:
        run = runs[system.name]
        rows.append({"name": system.name, "label": system.label, "q_len": float(run.query_lengths.mean()),
                     "FLOPs": run.flops, "ms_per_query": 1000 * run.latency_seconds / len(topics),
                     "ms_per_query_sum": 1000 * sum(run.seconds.values()) / len(topics),
                     "llm_calls_per_query": system.llm_calls_per_query,
                     **{f"{stage}_ms_per_query": 1000 * s / len(topics) for stage, s in run.seconds.items()}})
    efficiency = pd.DataFrame(rows)
    summary = efficiency[["name", "label"]].merge(experiment, on="name").merge(
        efficiency.drop(columns=["label"]), on="name")
    per_turn = _per_turn(per_query, topics, runs)
    summary.attrs["baseline"] = baseline if base is not None else None
    summary.attrs["measures"] = [str(m) for m in measures]
    return summary, per_turn


def _per_turn(per_query: pd.DataFrame, topics: pd.DataFrame, runs: Mapping[str, Run]) -> pd.DataFrame:
    wide = per_query.pivot_table(index=["name", "qid"], columns="measure", values="value").reset_index()
    q_len = pd.DataFrame([{"name": n, "qid": str(q), "q_len": int(length)}
                          for n, r in runs.items() for q, length in zip(topics["qid"], r.query_lengths)])
    out = wide.merge(q_len, on=["name", "qid"]).merge(topics[["qid", "turn"]].astype({"qid": str}), on="qid")
    return out.rename(columns={"name": "system"})


def format_table(summary: pd.DataFrame) -> str:
    """A printable table: measures (``*`` marks a significant difference from the baseline) and efficiency."""
    table = pd.DataFrame({"system": summary["label"]})
    for m in summary.attrs.get("measures", MEASURE_NAMES):
        values = summary[m].map(lambda v: f"{v:.3f}")
        reject = f"{m} reject"
        if reject in summary.columns:
            values = values + summary[reject].map(lambda r: "*" if r is True or r == 1.0 else " ")
        table[m] = values
    table["q_len"] = summary["q_len"].map(lambda v: f"{v:.1f}")
    table["FLOPs"] = summary["FLOPs"].map(lambda v: f"{v:.2f}")
    table["ms/query"] = summary["ms_per_query"].map(lambda v: f"{v:.1f}")
    parallel = "ms_per_query_sum" in summary.columns and \
        not np.allclose(summary["ms_per_query_sum"], summary["ms_per_query"])
    if parallel:
        table["ms/q sum"] = summary["ms_per_query_sum"].map(lambda v: f"{v:.1f}")
    table["LLM calls/q"] = summary["llm_calls_per_query"].map(lambda v: f"{v:g}")
    text = table.to_string(index=False)
    if parallel:
        text += ("\nms/query of a fusion: its slower pipeline plus fusing (they run in parallel, the paper's "
                 "footnote 5); ms/q sum: one after the other")
    baseline = summary.attrs.get("baseline")
    if baseline:
        text += (f"\n* significantly different from {baseline!r} (paired t-test, p < 0.05, "
                 f"Bonferroni-corrected over {len(summary) - 1} comparisons)")
    return text


def summary_records(summary: pd.DataFrame) -> List[dict]:
    """One JSON-able object per system: name, label, each measure under its PyTerrier name, efficiency,
    and the p-values against the baseline."""
    records = []
    measures = summary.attrs.get("measures", MEASURE_NAMES)
    for _, row in summary.iterrows():
        rec = {"name": row["name"], "label": row["label"], **{m: float(row[m]) for m in measures},
               "q_len": float(row["q_len"]), "FLOPs": float(row["FLOPs"]),
               "ms_per_query": float(row["ms_per_query"]), "llm_calls_per_query": float(row["llm_calls_per_query"])}
        if "ms_per_query_sum" in row:
            rec["ms_per_query_sum"] = float(row["ms_per_query_sum"])
        p_values = {m: float(row[f"{m} p-value corrected"]) for m in measures
                    if f"{m} p-value corrected" in row and pd.notna(row[f"{m} p-value corrected"])}
        if p_values:
            rec["p_values_vs_" + str(summary.attrs.get("baseline"))] = p_values
        records.append(rec)
    return records


def write_outputs(summary: pd.DataFrame, per_turn: pd.DataFrame, out_dir, *, plots: bool = True) -> Dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``per_turn.csv`` and the two plots into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "results.json", "per_turn": out_dir / "per_turn.csv"}
    with atomic_file(paths["csv"]) as f:
        summary.to_csv(f, index=False)
    with atomic_file(paths["per_turn"]) as f:
        per_turn.to_csv(f, index=False)
    with atomic_file(paths["json"]) as f:
        json.dump(summary_records(summary), f, indent=2)
    if plots:
        from .plots import plot_by_depth, plot_tradeoff, significant_systems

        labels = dict(zip(summary["name"], summary["label"]))
        baseline = labels.get(summary.attrs.get("baseline"))
        depth = per_turn.assign(system=per_turn["system"].map(labels))
        paths["depth_png"] = plot_by_depth(depth, out_dir / "by_depth.png", metric="RR",
                                           title="Effectiveness and query length by conversation depth",
                                           significant=significant_systems(summary, "RR"), baseline=baseline)
        paths["tradeoff_png"] = plot_tradeoff(summary.assign(system=summary["label"]), out_dir / "tradeoff.png",
                                              x="ms_per_query", y="RR", log_x=bool((summary["ms_per_query"] > 0).all()),
                                              title="Effectiveness vs. cost per query", baseline=baseline)
    return paths


def evaluate_dataset(dataset: str, *, systems: Sequence[str] = ("raw", "fc", "human"), student=None,
                     index_dir=None, model=None, llm=None, limit: Optional[int] = None, baseline: str = "raw",
                     num_results: int = 1000, verbose: bool = True):
    """Build or reuse the index of a conversational dataset and compare ``systems`` on its conversations.

    ``student``: a :class:`~pyterrier_disco.DiSCo` or its folder (needed by ``disco`` and ``fusion``); the
    document side of the comparison is the student's document model, else ``model`` (default: embedded
    SPLADE-tiny). Returns ``(summary, per_turn)`` as :func:`compare`.
    """
    from . import datasets
    from .encoders import Splade
    from .student import DiSCo
    from .index import dataset_index

    if isinstance(student, (str, Path)):
        student = DiSCo.from_pretrained(student, doc_model=model)
    splade = Splade(student.doc_model) if student is not None else Splade(model)
    from .train.data import limit_turns

    topics = limit_turns(datasets.conversations(dataset), limit)  # the first N turns of each dataset
    qrels = datasets.qrels(dataset)
    if ("llm" in systems or "fusion" in systems) and llm is None:
        from .rewrite import LLMRewriter
        llm = LLMRewriter(verbose=verbose)
    students = {"disco": student} if student is not None else {}
    index = dataset_index(dataset, splade, index_dir, verbose=verbose)
    judged = qrels["docno"].unique()
    if len(judged) and not np.isin(judged, index.docnos).any():  # also for indexes that record no dataset
        raise ValueError(f"none of the {len(judged)} judged documents of {dataset} is in the index {index.path}: "
                         "it was built from another collection")
    chosen = standard_systems(systems, splade, students=students, llm=llm)
    return compare(chosen, topics, qrels, index, num_results=num_results, baseline=baseline,
                   vocab=splade.doc_model.vocab_fingerprint, verbose=verbose)
