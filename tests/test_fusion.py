"""Fusion: numbers against brute-force loops, ranx against the pandas backend, PyTerrier integration."""
import math

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from pyterrier.measures import RR, nDCG

from pyterrier_disco.fusion import Fusion, fuse


def _random_runs(seed=0, n_runs=3, n_qids=4, n_docs=12):
    """Runs over a shared pool of documents; run 1 has no results for the last query."""
    rng = np.random.default_rng(seed)
    runs = []
    for r in range(n_runs):
        rows = []
        for q in range(n_qids):
            if r == 1 and q == n_qids - 1:
                continue
            docs = rng.choice(n_docs, size=rng.integers(3, 8), replace=False)
            for d in docs:
                rows.append((f"q{q}", f"d{d}", float(rng.normal(10 * r, 3))))
        runs.append(pd.DataFrame(rows, columns=["qid", "docno", "score"]))
    return runs


def _as_dicts(run):
    out = {}
    for qid, docno, score in run[["qid", "docno", "score"]].itertuples(index=False):
        out.setdefault(qid, {})[docno] = score
    return out


def _brute_minmax_sum(runs, weights):
    fused = {}
    for run, w in zip(runs, weights):
        for qid, docs in _as_dicts(run).items():
            low, high = min(docs.values()), max(docs.values())
            for docno, s in docs.items():
                fused.setdefault(qid, {}).setdefault(docno, 0.0)
                fused[qid][docno] += w * (s - low) / max(high - low, 1e-9)
    return fused


def _brute_rrf(runs, k):
    fused = {}
    for run in runs:
        for qid, docs in _as_dicts(run).items():
            for pos, docno in enumerate(sorted(docs, key=lambda d: -docs[d])):
                fused.setdefault(qid, {}).setdefault(docno, 0.0)
                fused[qid][docno] += 1.0 / (k + pos + 1)
    return fused


def _assert_matches(result, expected):
    assert list(result.columns) == ["qid", "docno", "score", "rank"]
    got = _as_dicts(result)
    assert got.keys() == expected.keys()
    for qid in expected:
        assert got[qid].keys() == expected[qid].keys()
        for docno, score in expected[qid].items():
            assert math.isclose(got[qid][docno], score, rel_tol=1e-12, abs_tol=1e-12)
    # ranks are 0-based, contiguous per query, by decreasing score, and the frame is sorted by qid then rank
    assert list(result["qid"]) == sorted(result["qid"])
    for _, group in result.groupby("qid"):
        assert list(group["rank"]) == list(range(len(group)))
        assert (np.diff(group["score"].to_numpy()) <= 0).all()


def test_mean_minmax_equals_brute_force_with_missing_query():
    runs = _random_runs()
    result = fuse(*runs, method="mean-minmax", num_results=None)
    _assert_matches(result, _brute_minmax_sum(runs, [1 / 3] * 3))
    # the query missing from run 1 is still fused from the other two runs
    assert set(result["qid"]) == {"q0", "q1", "q2", "q3"}


def test_rrf_and_weighted_sum_equal_brute_force():
    runs = _random_runs(seed=1)
    _assert_matches(fuse(*runs, method="rrf", k=60, num_results=None), _brute_rrf(runs, 60))
    _assert_matches(fuse(*runs, method="rrf", k=5, num_results=None), _brute_rrf(runs, 5))
    weights = [0.5, 0.2, 1.3]
    _assert_matches(fuse(*runs, method="wsum", weights=weights, num_results=None), _brute_minmax_sum(runs, weights))


def test_ranx_backend_agrees_with_pandas():
    """Pays ranx's numba compilation once (70-90 s with an empty cache: numba 0.68 on a 2-core AMD EPYC)."""
    runs = _random_runs(seed=2)
    runs.append(pd.DataFrame(columns=["qid", "docno", "score"]))  # a pipeline with no results at all
    for method, weights in [("mean-minmax", None), ("rrf", None), ("wsum", [0.1, 0.3, 0.6, 1.0])]:
        by_ranx = fuse(*runs, method=method, weights=weights, backend="ranx", num_results=None)
        by_pandas = fuse(*runs, method=method, weights=weights, num_results=None)
        assert by_ranx[["qid", "docno"]].equals(by_pandas[["qid", "docno"]]), method
        np.testing.assert_allclose(by_ranx["score"], by_pandas["score"], rtol=1e-12)


def test_num_results_and_ties():
    a = pd.DataFrame({"qid": ["1"] * 4, "docno": ["b", "a", "c", "d"], "score": [4.0, 4.0, 2.0, 1.0]})
    b = pd.DataFrame({"qid": ["1"] * 2, "docno": ["a", "b"], "score": [1.0, 1.0]})
    full = fuse(a, b, num_results=None)
    top2 = fuse(a, b, num_results=2)
    assert len(full) == 4 and top2.equals(full.iloc[:2])
    assert list(full["docno"][:2]) == ["b", "a"]  # equal fused scores: docno descending, as trec_eval


def test_bad_options_and_inputs():
    a = pd.DataFrame({"qid": ["1"], "docno": ["d"], "score": [1.0]})
    with pytest.raises(ValueError, match="at least two"):
        fuse(a)
    with pytest.raises(ValueError, match="2 pipelines"):
        fuse(a, a, method="wsum", weights=[1.0])
    with pytest.raises(ValueError, match="weights"):
        fuse(a, a, method="rrf", weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="backend"):
        fuse(a, a, backend="numpy")
    with pytest.raises(ValueError, match="score"):
        fuse(a, a.drop(columns=["score"]))
    with pytest.raises(ValueError, match="more than once"):
        fuse(a, pd.concat([a, a]))
    with pytest.raises(TypeError, match="pt.Transformer"):
        Fusion(pt.Transformer.from_df(a), a)


def _conversation_queries():
    return pd.DataFrame({
        "qid": ["c1_1", "c1_2", "c2_1"], "conversation_id": ["c1", "c1", "c2"], "turn": [0, 1, 0],
        "query": ["what is a throat infection", "how is it treated", "best hikes in utah"],
        "history": [[], [{"role": "user", "text": "what is a throat infection"}], []],
    })


def _pipelines():
    lexical = pd.DataFrame({"qid": ["c1_1", "c1_1", "c1_1", "c1_2", "c1_2", "c2_1", "c2_1"],
                            "docno": ["d1", "d2", "d3", "d4", "d5", "d6", "d7"],
                            "score": [12.0, 9.0, 3.0, 7.0, 6.5, 2.0, 1.0]})
    dense = pd.DataFrame({"qid": ["c1_1", "c1_1", "c1_2", "c1_2", "c1_2"],  # nothing for c2_1
                          "docno": ["d3", "d2", "d5", "d8", "d4"],
                          "score": [0.9, 0.8, 0.95, 0.5, 0.1]})
    return lexical, dense, pt.Transformer.from_df(lexical), pt.Transformer.from_df(dense)


def test_fusion_transformer_carries_query_columns_and_composes():
    lexical, dense, p1, p2 = _pipelines()
    queries = _conversation_queries()
    fusion = Fusion(p1, p2)
    out = fusion(queries)
    assert list(out.columns) == list(queries.columns) + ["docno", "score", "rank"]
    expected = fuse(lexical, dense)
    assert out[["qid", "docno", "score", "rank"]].equals(expected)
    for qid, group in out.groupby("qid"):
        row = queries.set_index("qid").loc[qid]
        assert (group["query"] == row["query"]).all() and (group["turn"] == row["turn"]).all()
        assert all(h == row["history"] for h in group["history"])

    pipeline = fusion >> pt.apply.doc_score(lambda r: r["score"] * 2) % 2
    piped = pipeline(queries)
    assert piped.groupby("qid").size().max() == 2
    piped_scores = piped.set_index(["qid", "docno"])["score"]
    np.testing.assert_allclose(piped_scores, 2 * out.set_index(["qid", "docno"]).loc[piped_scores.index, "score"])

    assert pt.inspect.subtransformers(fusion) == {"pipelines": [p1, p2]}
    assert pt.inspect.transformer_outputs(fusion, list(queries.columns)) == list(out.columns)
    assert ["qid", "query"] in pt.inspect.transformer_inputs(fusion)


def test_fusion_empty_input_and_no_results():
    _, _, p1, p2 = _pipelines()
    queries = _conversation_queries()
    empty = Fusion(p1, p2)(queries.iloc[:0])
    assert len(empty) == 0 and list(empty.columns) == list(queries.columns) + ["docno", "score", "rank"]
    assert empty["score"].dtype == "float64" and empty["rank"].dtype == "int64"
    unknown = pd.DataFrame({"qid": ["zz"], "query": ["nothing"]})
    none_found = Fusion(p1, p2)(unknown)
    assert len(none_found) == 0 and list(none_found.columns) == ["qid", "query", "docno", "score", "rank"]
    with pytest.raises(pt.validate.InputValidationError):
        Fusion(p1, p2)(pd.DataFrame({"query": ["no qid"]}))


def test_fusion_in_experiment_matches_hand_computed_metrics():
    lexical, dense, p1, p2 = _pipelines()
    queries = _conversation_queries()[["qid", "query"]]
    qrels = pd.DataFrame({"qid": ["c1_1", "c1_2", "c2_1"], "docno": ["d3", "d5", "d7"], "label": [1, 2, 1]})
    fused_ranking = _brute_minmax_sum([lexical, dense], [0.5, 0.5])
    assert fused_ranking["c1_1"]["d1"] == fused_ranking["c1_1"]["d3"]  # a tie, broken as trec_eval does
    expected_rr = []
    for qid, rel in zip(qrels["qid"], qrels["docno"]):
        # trec_eval's order: score descending, then docno descending
        order = sorted(fused_ranking[qid], key=lambda d: (fused_ranking[qid][d], d), reverse=True)
        expected_rr.append(1.0 / (order.index(rel) + 1))

    table = pt.Experiment([p1, p2, Fusion(p1, p2)], queries, qrels, [RR, nDCG @ 10],
                          names=["lexical", "dense", "fused"], perquery=True)
    fused = table[(table["name"] == "fused") & (table["measure"] == "RR")].set_index("qid")["value"]
    np.testing.assert_allclose([fused[q] for q in qrels["qid"]], expected_rr)
    out = Fusion(p1, p2)(queries).merge(qrels, on=["qid", "docno"])  # the rank column agrees with the evaluation
    np.testing.assert_allclose(1.0 / (out.set_index("qid").loc[qrels["qid"], "rank"] + 1), expected_rr)
    # one relevant document per query: nDCG@10 is log2(2)/log2(rank+1)
    ndcg = table[(table["name"] == "fused") & (table["measure"] == "nDCG@10")].set_index("qid")["value"]
    np.testing.assert_allclose([ndcg[q] for q in qrels["qid"]], [1 / math.log2(1 / rr + 1) for rr in expected_rr])
