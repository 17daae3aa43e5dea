"""Teacher runs (aggregation, parquet I/O, vocabulary check) and negative sampling."""
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from pyterrier_disco.train import (aggregate_teachers, build_examples, check_teacher_run, load_teacher_run,
                                   save_teacher_run)

META = {"doc_model": "splade-a", "vocab_size": 30522, "vocab_fingerprint": "abc123", "k": 1000}


def synthetic_run(n_queries=3, n_docs=40, teachers=("mistral", "llama"), seed=0):
    """Each teacher returns an overlapping but different subset of a shared pool of documents."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        for t in teachers:
            docs = rng.choice(n_docs, size=n_docs * 3 // 4, replace=False)
            scores = np.sort(rng.normal(10, 3, size=len(docs)))[::-1]
            rows += [(f"q{q}", f"d{d}", float(s), r, t) for r, (d, s) in enumerate(zip(docs, scores))]
    return pd.DataFrame(rows, columns=["qid", "docno", "score", "rank", "teacher"])


def ranked_single_run(qid, n_docs):
    """One teacher, docno d{i} at rank i with a strictly decreasing score."""
    return pd.DataFrame({"qid": qid, "docno": [f"d{i}" for i in range(n_docs)],
                         "score": np.linspace(100, 1, n_docs), "rank": np.arange(n_docs)})


def conv(*qids):
    return pd.DataFrame({"qid": list(qids), "query": ["q"] * len(qids)})


# -- teacher aggregation and I/O ---------------------------------------------------------------------

@pytest.mark.parametrize("how", ["mean", "min", "max"])
def test_aggregate_matches_brute_force(how):
    run = synthetic_run()
    agg = aggregate_teachers(run, how)
    fn = {"mean": np.mean, "min": np.min, "max": np.max}[how]
    for (qid, docno), score in zip(zip(agg["qid"], agg["docno"]), agg["score"]):
        per_teacher = [s for q, d, s in zip(run["qid"], run["docno"], run["score"]) if q == qid and d == docno]
        assert score == pytest.approx(fn(per_teacher))
    assert len(agg) == len(run.drop_duplicates(["qid", "docno"]))
    # sorted by score within each query
    for _, g in agg.groupby("qid"):
        assert np.all(np.diff(g["score"].to_numpy()) <= 0)


def test_aggregate_does_not_count_missing_teacher():
    run = pd.DataFrame({"qid": ["q"] * 3, "docno": ["a", "a", "b"], "score": [2.0, 4.0, 10.0],
                        "rank": [0, 0, 0], "teacher": ["t1", "t2", "t1"]})
    agg = aggregate_teachers(run).set_index("docno")["score"]
    assert agg["a"] == 3.0 and agg["b"] == 10.0  # b is averaged over the one teacher that returned it
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_teachers(run, "median")


def test_save_load_roundtrip_and_metadata(tmp_path):
    run = synthetic_run()
    path = save_teacher_run(run, tmp_path / "runs" / "teacher.parquet", metadata=META)
    assert [p.name for p in path.parent.iterdir()] == ["teacher.parquet"]  # no temp file left behind
    back = load_teacher_run(path)
    pd.testing.assert_frame_equal(back, run[list(back.columns)], check_dtype=False)
    assert back.attrs["teacher_run"]["vocab_fingerprint"] == "abc123"
    assert back.attrs["teacher_run"]["k"] == 1000
    check_teacher_run(back, {"doc_model": "splade-a", "vocab_size": 30522, "vocab_fingerprint": "abc123"})


def test_vocabulary_mismatch_is_detected(tmp_path):
    save_teacher_run(synthetic_run(), tmp_path / "r.parquet", metadata=META)
    back = load_teacher_run(tmp_path / "r.parquet")
    other = {"doc_model": "splade-b", "vocab_size": 30522, "vocab_fingerprint": "fff999"}
    with pytest.raises(ValueError, match="vocabulary mismatch.*splade-a.*splade-b"):
        check_teacher_run(back, other)


def test_load_errors_name_missing_columns(tmp_path):
    path = tmp_path / "bad.parquet"
    synthetic_run().drop(columns=["rank", "teacher"]).to_parquet(path)
    with pytest.raises(ValueError, match="rank, teacher"):
        load_teacher_run(path)
    with pytest.raises(ValueError, match="vocab_size"):
        save_teacher_run(synthetic_run(), tmp_path / "x.parquet", metadata={"doc_model": "m"})
    with pytest.raises(FileNotFoundError):
        load_teacher_run(tmp_path / "missing.parquet")


def test_unknown_teacher_column_is_a_clear_error():
    from pyterrier_disco.train import build_teacher_run
    with pytest.raises(KeyError, match="teacher column 'llm_rewrite' is not in the conversations"):
        build_teacher_run(conv("q0"), {"llm": "llm_rewrite"}, splade=None, index=None, verbose=False)


# -- sampling ----------------------------------------------------------------------------------------

def test_reference_strategy_respects_ranks_and_excludes_positives():
    run = ranked_single_run("q0", 1000)
    qrels = pd.DataFrame({"qid": ["q0", "q0", "q0"], "docno": ["d3", "d50", "d60"], "label": [1, 2, 0]})
    examples = build_examples(conv("q0"), run, qrels, n_negatives=70, strategy="reference", seed=1)
    (ex,) = examples
    ranks = [int(d[1:]) for d in ex.negatives]
    assert all(10 <= r < 960 for r in ranks)
    assert len(set(ex.negatives)) == 70  # without replacement
    assert not {"d3", "d50"} & set(ex.negatives)  # positives excluded; d60 (label 0) is not a positive
    assert ex.positive in ("d3", "d50") and not ex.pseudo_positive
    score = dict(zip(run["docno"], run["score"]))
    assert ex.teacher_scores == pytest.approx([score[d] for d in ex.docnos])
    # across many draws the whole window (and nothing outside it) is reached
    seen = set()
    for seed in range(30):
        seen.update(build_examples(conv("q0"), run, qrels, n_negatives=70, seed=seed)[0].negatives)
    ranks = {int(d[1:]) for d in seen}
    assert min(ranks) >= 10 and max(ranks) <= 959 and len(ranks) > 800


def test_top_and_uniform_strategies():
    run = ranked_single_run("q0", 200)
    qrels = pd.DataFrame({"qid": ["q0"], "docno": ["d1"], "label": [1]})
    top = build_examples(conv("q0"), run, qrels, n_negatives=8, strategy="top")[0]
    assert top.negatives == ("d0", "d2", "d3", "d4", "d5", "d6", "d7", "d8")
    uni = build_examples(conv("q0"), run, qrels, n_negatives=32, strategy="uniform", seed=3)[0]
    assert len(set(uni.negatives)) == 32 and "d1" not in uni.negatives
    assert min(int(d[1:]) for d in uni.negatives) < 10 or max(int(d[1:]) for d in uni.negatives) >= 10


def test_seed_determinism():
    run = synthetic_run(n_queries=5)
    conversations = conv(*[f"q{i}" for i in range(5)])
    a = build_examples(conversations, run, None, n_negatives=16, strategy="uniform", seed=42)
    b = build_examples(conversations, run, None, n_negatives=16, strategy="uniform", seed=42)
    c = build_examples(conversations, run, None, n_negatives=16, strategy="uniform", seed=43)
    assert [e.docnos for e in a] == [e.docnos for e in b]
    assert [e.docnos for e in a] != [e.docnos for e in c]


def test_multi_teacher_scores_are_the_mean():
    run = synthetic_run(n_queries=2)
    examples = build_examples(conv("q0", "q1"), run, None, n_negatives=8, strategy="uniform", seed=0)
    for ex in examples:
        for docno, score in zip(ex.docnos, ex.teacher_scores):
            sub = run[(run["qid"] == ex.qid) & (run["docno"] == docno)]
            assert score == pytest.approx(sub["score"].mean(), rel=1e-6)


def test_replacement_when_too_few_candidates_warns_once():
    run = pd.concat([ranked_single_run("q0", 15), ranked_single_run("q1", 14)])
    qrels = pd.DataFrame({"qid": ["q0", "q1"], "docno": ["d0", "d0"], "label": [1, 1]})
    with pytest.warns(UserWarning, match="2 conversation turn.*at most 8.*with replacement") as rec:
        examples = build_examples(conv("q0", "q1"), run, qrels, n_negatives=8, strategy="reference", seed=0)
    assert len([w for w in rec if "replacement" in str(w.message)]) == 1
    for ex in examples:
        assert len(ex.negatives) == 8
        assert all(10 <= int(d[1:]) for d in ex.negatives)
        assert len(set(ex.negatives)) < 8  # only 5 (resp. 4) candidates exist


def test_exactly_n_candidates_is_drawn_with_replacement_and_warned():
    """The reference draws with replacement when ``len(candidates) <= n``: exactly n is warned too."""
    run = pd.concat([ranked_single_run("q0", 18), ranked_single_run("q1", 19)])  # 8 and 9 window candidates
    qrels = pd.DataFrame({"qid": ["q0", "q1"], "docno": ["d0", "d0"], "label": [1, 1]})
    with pytest.warns(UserWarning, match="1 conversation turn.*at most 8 negative candidates.*with replacement"):
        exact, more = build_examples(conv("q0", "q1"), run, qrels, n_negatives=8, strategy="reference", seed=0)
    assert set(exact.negatives) < {f"d{i}" for i in range(10, 18)}  # with replacement: some of the 8 repeat
    assert len(set(more.negatives)) == 8  # 9 candidates: without replacement
    # the same draw as numpy's with-replacement choice from the 8 candidates
    rng = np.random.default_rng(0)
    rng.integers(1)  # the positive's draw
    assert list(exact.negatives) == list(rng.choice([f"d{i}" for i in range(10, 18)], size=8, replace=True))
    # top: exactly n candidates are all used, once each, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (top,) = build_examples(conv("q0"), ranked_single_run("q0", 9), qrels, n_negatives=8, strategy="top")
    assert top.negatives == tuple(f"d{i}" for i in range(1, 9))
    with pytest.warns(UserWarning, match="1 conversation turn.*fewer than 8 negative candidates.*'top'"):
        build_examples(conv("q0"), ranked_single_run("q0", 8), qrels, n_negatives=8, strategy="top")


def test_positive_outside_run_gets_best_window_score():
    run = ranked_single_run("q0", 100)
    qrels = pd.DataFrame({"qid": ["q0"], "docno": ["unretrieved"], "label": [1]})
    ex = build_examples(conv("q0"), run, qrels, n_negatives=4)[0]
    window_best = run["score"].iloc[10]  # the reference uses max over its ranks 10..959 window
    assert ex.positive == "unretrieved" and ex.teacher_scores[0] == pytest.approx(window_best)


def test_missing_positive_skip_or_teacher_top():
    run = pd.concat([ranked_single_run("q0", 50), ranked_single_run("q1", 50)])
    qrels = pd.DataFrame({"qid": ["q0"], "docno": ["d5"], "label": [1]})
    with pytest.warns(UserWarning, match="1 conversation turn.*no positive"):
        examples = build_examples(conv("q0", "q1"), run, qrels, n_negatives=4)
    assert [e.qid for e in examples] == ["q0"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        examples = build_examples(conv("q0", "q1"), run, qrels, n_negatives=4, missing_positive="teacher_top")
    top = examples[1]
    assert top.qid == "q1" and top.positive == "d0" and top.pseudo_positive
    assert top.teacher_scores[0] == pytest.approx(run["score"].max())
    # no qrels at all: every turn uses the teacher's top document
    assert all(e.positive == "d0" and e.pseudo_positive for e in build_examples(conv("q0", "q1"), run, None))


def test_soft_positives_are_the_best_non_gold_documents_of_the_window():
    """n_positives > 1 (the follow-up's "improved" setup): the qrels positive first, then the teacher's
    best-ranked non-gold documents of the reference window (ranks 10, 11, ...), each with its own score."""
    run = ranked_single_run("q0", 1000)
    score = dict(zip(run["docno"], run["score"]))
    qrels = pd.DataFrame({"qid": ["q0"], "docno": ["d3"], "label": [1]})
    (ex,) = build_examples(conv("q0"), run, qrels, n_negatives=16, n_positives=4, seed=5)
    assert ex.positive == "d3" and ex.extra_positives == ("d10", "d11", "d12") and ex.n_positives == 4
    assert len(ex.negatives) == 16 and not {"d3", "d10", "d11", "d12"} & set(ex.negatives)
    assert all(13 <= int(d[1:]) < 960 for d in ex.negatives)
    assert ex.teacher_scores == pytest.approx([score[d] for d in ex.docnos])  # own scores, not max(window)
    # two gold positives, one inside the window: the other gold comes before the soft positive, and the
    # gold in the window is never a soft positive or a negative
    two = pd.DataFrame({"qid": ["q0", "q0"], "docno": ["d3", "d11"], "label": [1, 1]})
    for seed in range(6):
        (ex,) = build_examples(conv("q0"), run, two, n_negatives=16, n_positives=3, seed=seed)
        assert {ex.positive, ex.extra_positives[0]} == {"d3", "d11"} and ex.extra_positives[1] == "d10"
        assert not {"d3", "d10", "d11"} & set(ex.negatives)
    # as many gold positives as asked: no soft positive
    three = pd.DataFrame({"qid": ["q0"] * 3, "docno": ["d1", "d2", "d4"], "label": [1, 1, 1]})
    (ex,) = build_examples(conv("q0"), run, three, n_negatives=8, n_positives=2, seed=0)
    assert {ex.positive, *ex.extra_positives} < {"d1", "d2", "d4"} and len(ex.extra_positives) == 1
    # one positive is the default, drawn exactly as before
    default = build_examples(conv("q0"), run, qrels, n_negatives=16, seed=5)
    assert [e.docnos for e in default] == [e.docnos for e in build_examples(conv("q0"), run, qrels, n_negatives=16,
                                                                           n_positives=1, seed=5)]
    assert default[0].extra_positives == () and default[0].n_positives == 1


def test_soft_positives_without_enough_documents_skip_the_turn():
    run = pd.concat([ranked_single_run("q0", 13), ranked_single_run("q1", 1000)])  # q0: 3 window documents
    qrels = pd.DataFrame({"qid": ["q0", "q1"], "docno": ["d0", "d0"], "label": [1, 1]})
    with pytest.warns(UserWarning, match="1 conversation turn.*fewer than 5 positives"):
        examples = build_examples(conv("q0", "q1"), run, qrels, n_negatives=4, n_positives=5)
    assert [e.qid for e in examples] == ["q1"]
    with pytest.raises(ValueError, match="n_positives"):
        build_examples(conv("q0"), run, qrels, n_positives=0)


def test_teacher_run_with_unknown_qids_is_an_error():
    run = pd.concat([ranked_single_run(q, 20) for q in ["q0", "x1", "x2"]])
    with pytest.raises(ValueError, match="2 qid.*not in the conversations.*'x1', 'x2'"):
        build_examples(conv("q0"), run, None)
    with pytest.raises(ValueError, match="strategy"):
        build_examples(conv("q0"), ranked_single_run("q0", 20), None, strategy="hard")


# -- integration with the core API (SPLADE encoder + sparse index) on real iKAT 2023 passages -------

def test_build_teacher_run_integration(ikat_data, tmp_path):
    """INTEGRATION: real retrieval through SpladeModel + SparseIndex. Skipped if the core API is absent."""
    encoders = pytest.importorskip("pyterrier_disco.encoders")
    index_mod = pytest.importorskip("pyterrier_disco.index")
    from pyterrier_disco.train import build_teacher_run

    root = ikat_data
    passages = [json.loads(line) for line in open(root / "2023_train_topics_psg_text.jsonl")][:40]
    docs = pd.DataFrame({"docno": [f"{p['doc_id']}:{p['passage_id']}" for p in passages],
                         "text": [p["passage_text"] for p in passages]}).drop_duplicates("docno")
    topics = json.load(open(root / "2023_train_topics.json"))
    turns = [(f"{t['number']}_{turn['turn_id']}", turn["utterance"], turn["resolved_utterance"])
             for t in topics[:1] for turn in t["turns"]]
    conversations = pd.DataFrame(turns, columns=["qid", "query", "human_rewrite"])

    splade = encoders.Splade(verbose=False)
    d_csr = splade.doc_model.encode(docs["text"].tolist())  # encoded once: indexed and used for the check
    index = index_mod.SparseIndex(tmp_path / "index", verbose=False)
    index.indexer(vocab=splade.doc_model.vocab_fingerprint).index(
        [{"docno": d, "toks": t} for d, t in zip(docs["docno"], splade.doc_model.to_dicts(d_csr))])
    run = build_teacher_run(conversations, {"human": "human_rewrite", "raw": "query"}, splade, index, k=20,
                            verbose=False)
    assert list(run.columns) == ["qid", "docno", "score", "rank", "teacher"]
    assert set(run["teacher"]) == {"human", "raw"} and set(run["qid"]) <= set(conversations["qid"])
    assert run.groupby(["qid", "teacher"]).size().max() <= 20
    # the human teacher's scores equal an independent dot product of the encoded rewrite and passages
    q_csr = splade.query_model.encode(conversations["human_rewrite"].tolist())
    dense = (q_csr @ d_csr.T).toarray()
    qpos = {q: i for i, q in enumerate(conversations["qid"])}
    dpos = {d: i for i, d in enumerate(docs["docno"])}
    human = run[run["teacher"] == "human"]
    expected = [dense[qpos[q], dpos[d]] for q, d in zip(human["qid"], human["docno"])]
    assert human["score"].to_numpy() == pytest.approx(expected, rel=1e-4, abs=1e-4)
    path = save_teacher_run(run, tmp_path / "teacher.parquet")
    check_teacher_run(load_teacher_run(path), splade.doc_model)
