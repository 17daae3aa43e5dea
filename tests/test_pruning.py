"""Exact pruning, the quantised index and the machine-chosen scorer settings, against independent computations."""
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pyterrier_disco.index import CorruptIndexError, SparseIndex, index_from_csr
from pyterrier_disco.index import _machine, _pruning
from pyterrier_disco.index._kernels import BLOCK_DOCS, add_segment
from pyterrier_disco.index._scoring import search


@pytest.fixture
def always_prune(monkeypatch):
    """Prune every block that has a threshold and a non-essential term, however few postings that skips."""
    monkeypatch.setattr(_pruning, "MIN_SKIP", 0.0)
    monkeypatch.setattr(_pruning, "LOOKUP_COST", 0.0)
    monkeypatch.setattr(_pruning, "PRUNE_BUDGET", 1.0)


def float32_top_k(matrix, terms, weights, k):
    """The exhaustive scorer's definition, computed with numpy: float32 term-at-a-time sums in query order,
    the top k by score, ties by doc id."""
    columns = sp.csc_matrix(matrix, dtype=np.float32)
    acc = np.zeros(matrix.shape[0], np.float32)
    for t, w in zip(terms, weights):
        acc += np.float32(w) * columns[:, t].toarray().ravel()  # every float32 product and sum rounded alike
    positive = np.flatnonzero(acc > 0)
    top = positive[np.lexsort((positive, -acc[positive]))][:k]
    return top, acc[top]


def check_pruning(matrix, queries, ks, tmp_path, threads=(1, 2)):
    """Pruned search equals exhaustive search and the numpy definition exactly; returns the pruning counts."""
    index = index_from_csr(tmp_path / "idx", matrix, [f"d{i}" for i in range(matrix.shape[0])],
                           [f"t{j}" for j in range(matrix.shape[1])])
    arrays, docnos, _ = index._load()
    stats = {}
    for k in ks:
        for th in threads:
            exhaustive = search(arrays, len(docnos), queries, k, threads=th, prune=False)
            pruned = search(arrays, len(docnos), queries, k, threads=th, prune=True, stats=stats)
            alone = [search(arrays, len(docnos), [q], k, threads=th, prune=True, stats=stats) for q in queries]
            for a, b in zip(exhaustive, pruned):
                assert np.array_equal(a, b)
            for q, (terms, weights) in enumerate(queries):
                docs, scores = float32_top_k(matrix, terms, weights, k)
                got_docs, got_scores, count = alone[q][0][0], alone[q][1][0], alone[q][2][0]
                assert list(got_docs[:count]) == list(docs)
                assert list(got_scores[:count]) == list(scores.astype(np.float64))
    return stats


def tied_collection(n_docs, n_terms, seed, density):
    """Weights in multiples of 1/4: float32 sums of them with query weights {0.5, 1, 2} are exact, ties abound."""
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_docs, n_terms, density=density, format="csr", random_state=seed,
                       data_rvs=lambda n: rng.integers(1, 5, size=n) / 4).astype(np.float32)
    return matrix, rng


def test_pruning_equals_exhaustive_over_blocks_with_ties(tmp_path, always_prune):
    matrix, rng = tied_collection(2 * BLOCK_DOCS + 777, n_terms=12, seed=5, density=0.02)
    queries = [(np.sort(rng.choice(12, size=n, replace=False)), rng.choice([0.5, 1.0, 2.0], size=n))
               for n in (1, 3, 6, 12)]
    stats = check_pruning(matrix, queries, (1, 50, 3000, 10 ** 5), tmp_path)  # 10^5: more than the matches
    assert stats["blocks_pruned"] > 0 and stats["postings_skipped"] > 0  # the pruned path did run


@pytest.fixture(scope="module")
def real_vectors(splade_model):
    """SPLADE-tiny vectors of the packaged disco-mini passages, and of 12 of them cut to their first words
    (short, real queries); terms renumbered over the queries' terms."""
    from pyterrier_disco.index import dataset_docs

    texts = [d["text"] for d in dataset_docs("disco-mini/train")]
    docs = splade_model.encode(texts, batch_size=32).tocsc()
    queries = splade_model.encode([" ".join(t.split()[:8]) for t in texts[::37]], batch_size=32)
    terms = np.unique(queries.indices)
    return sp.csr_matrix(docs[:, terms]), sp.csr_matrix(queries[:, terms])


def test_pruning_equals_exhaustive_on_real_vectors(tmp_path, real_vectors, always_prune):
    """Documents drawn from real passage vectors (a random 70% of one passage's terms, exact weights, so equal
    documents tie) over two and a half blocks; real query vectors."""
    docs, query_matrix = real_vectors
    rng = np.random.default_rng(0)
    n = 2 * BLOCK_DOCS + 1234
    picks = docs[rng.integers(0, docs.shape[0], size=n)].tocoo()
    keep = rng.random(picks.nnz) < 0.7
    matrix = sp.csr_matrix((picks.data[keep], (picks.row[keep], picks.col[keep])), shape=(n, docs.shape[1]))
    queries = [(query_matrix[i].indices, query_matrix[i].data.astype(np.float64)) for i in range(query_matrix.shape[0])]
    stats = check_pruning(matrix, queries, (10, 100, 1000), tmp_path, threads=(1,))
    assert stats["blocks_pruned"] > 0


def test_pruning_edge_cases(tmp_path, always_prune):
    matrix, rng = tied_collection(2 * BLOCK_DOCS + 5, n_terms=5, seed=2, density=0.01)
    index = index_from_csr(tmp_path / "i", matrix, [str(i) for i in range(matrix.shape[0])], list("abcde"))
    arrays, docnos, _ = index._load()
    empty = (np.empty(0, np.int64), np.empty(0))
    negative = (np.array([0, 1, 2]), np.array([1.0, -2.0, 0.5]))  # never pruned (the bounds need w > 0); exact
    for k in (1, 10, 10 ** 6):
        stats = {}
        pruned = search(arrays, len(docnos), [empty, negative], k, prune=True, stats=stats)
        exhaustive = search(arrays, len(docnos), [empty, negative], k, prune=False)
        assert all(np.array_equal(a, b) for a, b in zip(pruned, exhaustive))
        assert pruned[2][0] == 0 and stats["blocks_pruned"] == stats["blocks_exhaustive"] == 0
    assert not _pruning.use_pruning(np.array([1.0]), 10, BLOCK_DOCS)  # one block: nothing to skip
    assert not _pruning.use_pruning(np.array([1.0, np.nan]), 10, 10 * BLOCK_DOCS, forced=True)
    assert _pruning.use_pruning(np.array([0.5, 2.0]), 10, 10 * BLOCK_DOCS, forced=True)


def test_block_maxima_stored_checked_and_computed_for_older_indexes(tmp_path, always_prune):
    matrix, rng = tied_collection(BLOCK_DOCS + 300, n_terms=6, seed=1, density=0.05)
    index = index_from_csr(tmp_path / "i", matrix, [str(i) for i in range(matrix.shape[0])], list("abcdef"))
    stored = np.load(tmp_path / "i" / "block_max.npy")
    columns = matrix.tocsc()
    for t in range(6):
        col = columns[:, t]
        for b in range(2):
            in_block = (col.indices >= b * BLOCK_DOCS) & (col.indices < (b + 1) * BLOCK_DOCS)
            assert stored[t, b] == (col.data[in_block].max() if in_block.any() else 0)
    q = pd.DataFrame({"qid": ["1"], "query_toks": [{"a": 1.0, "c": 2.0, "f": 0.5}]})
    expected = index.retriever(num_results=30, prune=False)(q)
    (tmp_path / "i" / "block_max.npy").unlink()  # as an index written before block maxima (whose pt_meta.json
    meta = json.loads((tmp_path / "i" / "pt_meta.json").read_text())  # could not list the file)
    del meta["files"]["block_max.npy"]
    (tmp_path / "i" / "pt_meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="block_max.npy"):
        pd.testing.assert_frame_equal(SparseIndex(tmp_path / "i").retriever(num_results=30, prune=True)(q), expected)
    np.save(tmp_path / "i" / "block_max.npy", stored[:, :1])
    with pytest.raises(CorruptIndexError, match="block_max.npy"):
        SparseIndex(tmp_path / "i").retriever()(q)


def test_quantized_index(tmp_path, real_vectors):
    docs, query_matrix = real_vectors
    names, terms = [f"d{i}" for i in range(docs.shape[0])], [f"t{j}" for j in range(docs.shape[1])]
    exact = index_from_csr(tmp_path / "exact", docs, names, terms)
    records = [{"docno": names[i], "toks": {terms[j]: float(w) for j, w in zip(docs[i].indices, docs[i].data)}}
               for i in range(docs.shape[0])]
    quantized = SparseIndex(tmp_path / "q", quantized=True, verbose=False).indexer().index(records)
    meta = json.loads((tmp_path / "q" / "pt_meta.json").read_text())
    assert meta["quantized"] and np.load(tmp_path / "q" / "weights.npy", mmap_mode="r").dtype == np.uint8
    step = np.load(tmp_path / "q" / "scales.npy")
    lexicon = {t: i for i, t in enumerate(json.loads((tmp_path / "q" / "lexicon.json").read_text()))}
    for term in terms[:40]:
        (ids_e, w_e), (ids_q, w_q) = exact.postings(term), quantized.postings(term)
        assert list(ids_e) == list(ids_q)
        codes = np.maximum(1, np.rint(w_e / step[lexicon[term]]))  # the nearest code; 1 keeps a tiny weight's match
        assert np.allclose(w_q / step[lexicon[term]], codes, atol=1e-3)
    frame = pd.DataFrame({"qid": [str(i) for i in range(query_matrix.shape[0])],
                          "query_toks": [{terms[j]: float(w)
                                          for j, w in zip(query_matrix[i].indices, query_matrix[i].data)}
                                         for i in range(query_matrix.shape[0])]})
    got = quantized.retriever(num_results=10, threads=1)(frame)
    want = exact.retriever(num_results=10, threads=1)(frame)
    overlap = [len(set(got[got.qid == q].docno) & set(want[want.qid == q].docno)) / 10 for q in frame.qid]
    assert np.mean(overlap) >= 0.9
    dense = docs.toarray().astype(np.float64)
    for _, row in got.iterrows():  # each quantised score is within a step per query term of the exact one
        toks = frame.set_index("qid").loc[row.qid, "query_toks"]
        bound = sum(w * step[lexicon[t]] for t, w in toks.items())
        truth = sum(w * dense[names.index(row.docno), terms.index(t)] for t, w in toks.items())
        assert abs(row.score - truth) <= bound + 1e-5 * truth
    with pytest.raises(ValueError, match="quantized=False"):
        SparseIndex(tmp_path / "q", quantized=False).retriever()(frame)


def test_vector_and_scalar_kernels_are_bit_identical():
    rng = np.random.default_rng(4)
    ids = np.sort(rng.choice(BLOCK_DOCS, size=5000, replace=False)).astype(np.uint16)
    for weights in (rng.random(5000, dtype=np.float32), rng.integers(1, 256, size=5000).astype(np.uint8)):
        results = []
        for vector in (True, False):
            acc = rng.random(2 * BLOCK_DOCS, dtype=np.float32) if not results else results[0][0].copy()
            start = acc.copy()
            for lo, hi, base in ((0, 5000, 0), (7, 4093, BLOCK_DOCS), (100, 117, 0)):
                add_segment(vector, acc, ids, weights, lo, hi, np.float32(0.37), np.int64(base))
            results.append((start, acc))
        assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])
        expected = results[0][0].copy()
        for lo, hi, base in ((0, 5000, 0), (7, 4093, BLOCK_DOCS), (100, 117, 0)):
            for p in range(lo, hi):  # the scalar statement, one posting at a time
                d = base + int(ids[p])
                expected[d] = np.float32(expected[d] + np.float32(0.37) * np.float32(weights[p]))
        assert np.array_equal(results[0][1], expected)


def test_machine_facts_and_rules(monkeypatch):
    facts = _machine.machine()
    assert facts["cpu"] and isinstance(facts["avx2"], bool)
    assert facts["l2_bytes"] is None or facts["l2_bytes"] >= 64 * 1024
    assert _machine.pass_shift(2 << 20) == 18  # 2 MiB L2 (Intel Xeon): 2^18 documents, 1 MiB of scores
    assert _machine.pass_shift(512 << 10) == 16  # 512 KiB (AMD EPYC Zen 3): 2^16, 256 KiB of scores
    assert _machine.pass_shift(None) == 18 and _machine.pass_shift(1 << 30) == 20
    assert _machine.kernel_by_rule({"avx512f": False, "vendor": "GenuineIntel"}) == "scalar"
    assert _machine.kernel_by_rule({"avx512f": True, "vendor": "GenuineIntel"}) == "vector"
    assert _machine.kernel_by_rule({"avx512f": True, "vendor": "AuthenticAMD"}) is None  # calibrate
    monkeypatch.setenv("DISCO_KERNEL", "fastest")
    _machine.settings.cache_clear()
    try:
        with pytest.raises(ValueError, match="DISCO_KERNEL"):
            _machine.settings()
        monkeypatch.setenv("DISCO_KERNEL", "vector")
        monkeypatch.setenv("DISCO_PASS_DOCS", "32768")
        assert _machine.settings()["kernel"] == "vector" and _machine.settings()["pass_shift"] == 15
    finally:
        _machine.settings.cache_clear()


def test_calibration_is_cached_per_cpu(monkeypatch):
    facts = dict(_machine.machine(), cpu="test CPU")
    first = _machine.calibrated_kernel(facts, 16)
    assert first in ("vector", "scalar")
    cached = json.loads((_machine.cache_file()).read_text())
    assert any(key.startswith("test CPU|") and v["kernel"] == first for key, v in cached.items())
    monkeypatch.setattr(_machine, "_time_kernels", lambda shift: pytest.fail("calibrated twice"))
    assert _machine.calibrated_kernel(facts, 16) == first
