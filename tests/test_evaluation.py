import json
import time

import numpy as np
import pandas as pd
import pytest

import pyterrier_disco as disco
from pyterrier_disco.cli import main
from pyterrier_disco.evaluation import (MEASURE_NAMES, compare, format_table, standard_systems, summary_records,
                                        warm_up_rewriter)
from pyterrier_disco.rewrite import Column
from pyterrier_disco.rewrite.base import GenerativeRewriter
from pyterrier_disco.rewrite.cache import RewriteCache

TEST = "disco-mini/test"


@pytest.fixture(scope="module")
def mini(tmp_path_factory, splade_model):
    path = tmp_path_factory.mktemp("mini") / "index"
    assert main(["index", "--dataset", TEST, "--out", str(path)]) == 0
    topics = disco.conversations(TEST)
    topics = topics[topics["conversation_id"].isin(topics["conversation_id"].unique()[:4])].reset_index(drop=True)
    return disco.SparseIndex(path), topics, disco.datasets.qrels(TEST)


def reciprocal_rank(results, qrels):
    relevant = qrels.groupby("qid")["docno"].apply(set)
    rr = []
    for qid in relevant.index:
        ranked = results[results["qid"] == qid].sort_values("rank")["docno"].tolist()
        hits = [i for i, d in enumerate(ranked) if d in relevant[qid]]
        rr.append(1 / (hits[0] + 1) if hits else 0.0)
    return float(np.mean(rr))


def test_compare_measures_and_efficiency_against_independent_computations(mini, splade_model):
    index, topics, qrels = mini
    qrels = qrels[qrels["qid"].isin(topics["qid"])]
    splade = disco.Splade(splade_model)
    untrained = disco.DiSCo.from_models(splade_model)
    systems = standard_systems(["raw", "fc", "human", "disco", "fusion"], splade, students={"untrained": untrained},
                               llm=Column("human_rewrite"))
    summary, per_turn = compare(systems, topics, qrels, index, verbose=False)
    by_name = summary.set_index("name")
    raw_results = (splade.query_encoder() >> index.retriever())(topics)
    assert by_name.loc["raw", "RR"] == pytest.approx(reciprocal_rank(raw_results, qrels))
    # an untrained student is the full-context baseline
    for m in MEASURE_NAMES:
        assert by_name.loc["untrained", m] == pytest.approx(by_name.loc["fc", m])
    fused = disco.fuse((splade.conversation_encoder() >> index.retriever())(topics),
                       (Column("human_rewrite") >> splade.query_encoder() >> index.retriever())(topics))
    assert by_name.loc["fusion", "RR"] == pytest.approx(reciprocal_rank(fused, qrels))
    toks = splade.query_encoder()(topics)["query_toks"]
    assert by_name.loc["raw", "q_len"] == pytest.approx(np.mean([len(t) for t in toks]))
    passages = pd.DataFrame(list(disco.index.dataset_docs(TEST)))
    doc_matrix = splade_model.encode(list(passages["text"]))
    assert by_name.loc["raw", "FLOPs"] == pytest.approx(disco.flops(splade_model.to_csr(list(toks)), doc_matrix),
                                                        rel=1e-6)
    assert by_name.loc["human", "llm_calls_per_query"] == 0 and (summary["ms_per_query"] > 0).all()
    assert set(per_turn["system"]) == set(summary["name"]) and len(per_turn) == len(summary) * len(topics)
    assert "RR p-value corrected" in summary.columns  # t-tests against the raw baseline
    table = format_table(summary)
    assert "SPLADE (raw utterance)" in table and "Bonferroni" in table
    records = summary_records(summary)
    assert [r["name"] for r in records] == list(summary["name"])
    assert all({"RR", "R@10", "R@100", "nDCG@3", "q_len", "FLOPs", "ms_per_query", "llm_calls_per_query"} <= set(r)
               for r in records)


def test_write_outputs_and_cli_evaluate(mini, tmp_path):
    index, topics, qrels = mini
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--dataset", TEST, "--systems", "raw,human", "--index", str(index.path), "--limit", "12",
                 "--out", str(out), "--plots", str(tmp_path / "plots")])
    assert code == 0
    records = json.loads(out.read_text())
    assert [r["name"] for r in records] == ["raw", "human"]
    for name in ("results.csv", "results.json", "per_turn.csv", "by_depth.png", "tradeoff.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 0
    assert (tmp_path / "plots" / "by_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors_are_clear(capsys, tmp_path):
    assert main(["evaluate", "--dataset", "nope/none", "--systems", "raw"]) == 2
    assert "known ids" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", TEST, "--systems", "disco"]) == 2
    assert "student" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", "--dataset", TEST, "--out", str(tmp_path / "i"), "--backend", "lucene"])


class SlowLoadingRewriter(GenerativeRewriter):
    """A generative rewriter whose model takes ``load_s`` to load, at its first generation (as a real LLM's
    lazy loading does); afterwards it rewrites at once."""

    def __init__(self, load_s: float, cache=False):
        super().__init__(policy="rewrite", batch_size=1, cache=cache)
        self.load_s = load_s
        self.loaded = False
        self.generate_calls = 0

    def model_inputs(self, utterances, histories):
        return [f"{len(h)} | {u}" for u, h in zip(utterances, histories)]

    def generate(self, inputs):
        self.generate_calls += 1
        if not self.loaded:
            time.sleep(self.load_s)
            self.loaded = True
        return [f"resolved {text.split(' | ', 1)[1]}" for text in inputs]

    def cache_settings(self):
        return {"rewriter": "slow-loading test"}


def test_ms_per_query_leaves_out_the_rewriter_model_loading(mini, splade_model):
    index, topics, qrels = mini
    splade = disco.Splade(splade_model)
    load_s = 2.0
    rewriter = SlowLoadingRewriter(load_s)
    summary, _ = compare(standard_systems(["raw", "llm"], splade, llm=rewriter), topics, qrels, index, verbose=False)
    llm = summary.set_index("name").loc["llm"]
    assert rewriter.loaded and rewriter.llm_calls == len(topics)  # the warm-up generation is not counted
    with_load_ms = 1000 * load_s / len(topics)
    assert llm["rewrite_ms_per_query"] < with_load_ms / 4, (llm["rewrite_ms_per_query"], with_load_ms)


def test_rewrites_all_cached_load_no_model(mini, splade_model, tmp_path):
    index, topics, qrels = mini
    splade = disco.Splade(splade_model)
    cache = tmp_path / "rewrites.sqlite"
    first = SlowLoadingRewriter(0.0, cache=cache)
    compare(standard_systems(["llm"], splade, llm=first), topics, qrels, index, baseline=None, verbose=False)
    assert len(RewriteCache(cache)) == len(topics)  # the warm-up generation is not cached either
    again = SlowLoadingRewriter(5.0, cache=cache)
    summary, _ = compare(standard_systems(["llm", "fusion"], splade, llm=again,
                                          students={"untrained": disco.DiSCo.from_models(splade_model)}),
                         topics, qrels, index, baseline=None, verbose=False)
    assert again.generate_calls == 0 and not again.loaded and again.llm_calls == 0
    assert summary.set_index("name").loc["llm", "llm_calls_per_query"] == 1


def test_warm_up_rewriter_hooks():
    calls = []

    class Hooked:
        def warm_up(self):
            calls.append("warm_up")

    topics = pd.DataFrame({"qid": ["1"], "query": ["where is it"], "history": [[]]})
    assert warm_up_rewriter(Hooked(), topics) and calls == ["warm_up"]
    assert not warm_up_rewriter(Column("human_rewrite"), topics)  # nothing to load
    slow = SlowLoadingRewriter(0.0)
    assert warm_up_rewriter(slow, topics) and slow.loaded and slow.llm_calls == 0


def test_fusion_latency_is_the_slower_parallel_pipeline_and_the_sum_is_reported(mini, splade_model):
    """The paper's footnote 5: a fusion's two pipelines run in parallel, so its latency is the slower one (plus
    fusing); ms_per_query_sum is running them one after the other."""
    index, topics, qrels = mini
    splade = disco.Splade(splade_model)
    rewriter = SlowLoadingRewriter(0.0)
    rewriter.generate = lambda inputs: time.sleep(0.02 * len(inputs)) or [f"resolved {t}" for t in inputs]
    systems = standard_systems(["raw", "llm", "fusion"], splade, llm=rewriter,
                               students={"untrained": disco.DiSCo.from_models(splade_model)})
    summary, _ = compare(systems, topics, qrels, index, verbose=False)
    by_name = summary.set_index("name")
    stages = [c for c in summary.columns if c.endswith("_ms_per_query") and c != "ms_per_query_sum"]
    fusion = by_name.loc["fusion"]
    # the sum is every stage of both pipelines and the fusing
    assert fusion["ms_per_query_sum"] == pytest.approx(sum(fusion[c] for c in stages if pd.notna(fusion[c])))
    # the parallel latency covers the LLM pipeline's rewriting and fusing, but not the other pipeline too
    assert fusion["rewrite_ms_per_query"] + fusion["fuse_ms_per_query"] <= fusion["ms_per_query"] + 1e-9
    assert fusion["ms_per_query"] < fusion["ms_per_query_sum"]
    for name in ("raw", "llm"):
        assert by_name.loc[name, "ms_per_query"] == pytest.approx(by_name.loc[name, "ms_per_query_sum"])
    table = format_table(summary)
    assert "ms/q sum" in table and "footnote 5" in table
    assert summary_records(summary)[2]["ms_per_query_sum"] == pytest.approx(fusion["ms_per_query_sum"])
