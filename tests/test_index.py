import json

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_disco import Splade, SparseIndex, flops, new_index, query_length
from pyterrier_disco.index import CorruptIndexError


@pytest.fixture(scope="module")
def queries(splade_model, ikat_turns):
    texts = list(ikat_turns["query"][:20]) + list(ikat_turns["human_rewrite"][:20])
    frame = pd.DataFrame({"qid": [str(i) for i in range(len(texts))], "query": texts})
    return Splade(splade_model).query_encoder()(frame)


def brute_force(query_matrix, doc_matrix, docnos, k):
    scores = (query_matrix @ doc_matrix.T).toarray().astype(np.float64)
    out = []
    for row in scores:
        candidates = np.flatnonzero(row > 0)
        order = sorted(candidates, key=lambda j: (-row[j], j))[:k]
        out.append(([docnos[j] for j in order], row[order]))
    return out


@pytest.mark.parametrize("threads", [1, 2])
def test_retrieval_equals_brute_force_on_real_passages(ikat_index, ikat_passages, queries, splade_model, threads):
    index, doc_matrix = ikat_index
    k = 50
    res = index.retriever(num_results=k, threads=threads)(queries)
    expected = brute_force(splade_model.to_csr(list(queries["query_toks"])), doc_matrix,
                           list(ikat_passages["docno"]), k)
    for qid, (docnos, scores) in zip(queries["qid"], expected):
        got = res[res["qid"] == qid].sort_values("rank")
        assert list(got["docno"]) == docnos
        np.testing.assert_allclose(got["score"].to_numpy(), scores, atol=1e-5)
        assert list(got["rank"]) == list(range(len(docnos)))


def test_save_load_and_artifact_entry_point(ikat_index, ikat_passages, queries):
    index, _ = ikat_index
    first = index.retriever(num_results=10)(queries)
    reopened = pt.Artifact.load(str(index.path))
    assert isinstance(reopened, SparseIndex)
    pd.testing.assert_frame_equal(first, reopened.retriever(num_results=10)(queries))
    meta = json.loads((index.path / "pt_meta.json").read_text())
    assert meta["type"] == "sparse_index" and meta["format"] == "numba" and meta["num_docs"] == len(ikat_passages)


def test_empty_query_and_empty_frame(ikat_index):
    index, _ = ikat_index
    retr = index.retriever(num_results=5)
    res = retr(pd.DataFrame({"qid": ["a", "b"], "query": ["", "x"], "query_toks": [{}, {"[unused5]": 1.0}]}))
    assert len(res) == 0 and {"qid", "docno", "score", "rank"} <= set(res.columns)
    empty = retr(pd.DataFrame(columns=["qid", "query", "query_toks"]))
    assert len(empty) == 0 and {"qid", "docno", "score", "rank"} <= set(empty.columns)
    assert {"docno", "score", "rank"} <= set(pt.inspect.transformer_outputs(retr, ["qid", "query", "query_toks"]))
    with pytest.raises(pt.validate.InputValidationError):
        retr(pd.DataFrame({"qid": ["1"], "query": ["no toks"]}))


def test_zero_documents_and_bad_records(tmp_path):
    with pytest.raises(ValueError, match="zero documents"):
        SparseIndex(tmp_path / "a", verbose=False).indexer().index([])
    with pytest.raises(KeyError, match="toks"):
        SparseIndex(tmp_path / "b", verbose=False).indexer().index([{"docno": "d1", "text": "raw text"}])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def small_index(path, docs):
    return SparseIndex(path, verbose=False).indexer(vocab="v1").index(
        [{"docno": d, "toks": t} for d, t in docs.items()])


DOCS = {"d1": {"a": 1.0, "b": 2.0}, "d2": {"b": 1.0, "c": 3.0}, "d3": {"a": 0.5, "c": 0.5}}


def test_missing_truncated_and_foreign_index_files(tmp_path):
    q = pd.DataFrame({"qid": ["1"], "query_toks": [{"a": 1.0, "c": 1.0}]})
    idx = small_index(tmp_path / "i", DOCS)
    assert list(idx.retriever()(q)["docno"]) == ["d2", "d1", "d3"]
    (tmp_path / "i" / "weights.npy").write_bytes((tmp_path / "i" / "weights.npy").read_bytes()[:-6])
    with pytest.raises(CorruptIndexError, match="weights.npy"):
        SparseIndex(tmp_path / "i").retriever()(q)
    (tmp_path / "i" / "doc_ids.npy").unlink()
    with pytest.raises(CorruptIndexError, match="doc_ids.npy"):
        SparseIndex(tmp_path / "i").retriever()(q)
    with pytest.raises(FileNotFoundError, match="pt_meta.json"):
        SparseIndex(tmp_path / "nothing").retriever()(q)


def test_vocabulary_mismatch_and_ties(tmp_path):
    idx = small_index(tmp_path / "i", {"x": {"a": 1.0}, "y": {"a": 1.0}, "z": {"b": 1.0}})
    q = pd.DataFrame({"qid": ["1"], "query_toks": [{"a": 2.0}]})
    assert list(idx.retriever(vocab="v1")(q)["docno"]) == ["x", "y"]  # ties: indexing order
    with pytest.raises(ValueError, match="vocabulary"):
        idx.retriever(vocab="other")(q)
    stamped = q.copy()
    stamped.attrs["vocab"] = "other"  # as the project's query encoders stamp their output
    with pytest.raises(ValueError, match="vocabulary other"):
        idx.retriever()(stamped)
    foreign = pd.DataFrame({"qid": [str(i) for i in range(5)], "query_toks": [{f"▁tok{i}": 1.0} for i in range(5)]})
    with pytest.raises(ValueError, match="another vocabulary"):
        idx.retriever()(foreign)
    one_long = pd.DataFrame({"qid": ["1"], "query_toks": [{f"▁tok{i}": 1.0 for i in range(25)}]})
    with pytest.raises(ValueError, match="another vocabulary"):
        idx.retriever()(one_long)
    with pytest.raises(FileExistsError):
        small_index(tmp_path / "i", DOCS)


def test_pisa_agrees_with_numba_on_top10(tmp_path, ikat_passages, splade_model, ikat_index, queries):
    numba_index, doc_matrix = ikat_index
    pisa = new_index(tmp_path / "pisa", backend="pisa", verbose=False)
    pisa.indexer().index({"docno": d, "toks": t} for d, t in
                         zip(ikat_passages["docno"], splade_model.to_dicts(doc_matrix)))
    a = numba_index.retriever(num_results=10)(queries)
    b = pisa.retriever(num_results=10)(queries)
    overlaps = [len(set(a[a.qid == q].docno) & set(b[b.qid == q].docno)) / max(1, len(a[a.qid == q]))
                for q in queries["qid"]]
    assert np.mean(overlaps) >= 0.9


def test_pisa_open_index_and_overwrite(tmp_path):
    from pyterrier_disco.index import PisaBackend, open_index

    pisa = new_index(tmp_path / "p", backend="pisa", verbose=False)
    pisa.indexer().index([{"docno": "d1", "toks": {"a": 1.0}}, {"docno": "d2", "toks": {"b": 2.0}}])
    reopened = open_index(tmp_path / "p", verbose=False)
    assert isinstance(reopened, PisaBackend)
    q = pd.DataFrame({"qid": ["1"], "query": ["b"], "query_toks": [{"b": 1.0}]})
    assert list(reopened.retriever(num_results=5)(q)["docno"]) == ["d2"]
    with pytest.raises(FileExistsError, match="overwrite"):
        reopened.indexer().index([{"docno": "d3", "toks": {"a": 1.0}}])
    reopened.indexer(overwrite=True).index([{"docno": "d3", "toks": {"b": 1.0}}, {"docno": "d4", "toks": {"c": 1.0}}])
    assert list(open_index(tmp_path / "p", verbose=False).retriever(num_results=5)(q)["docno"]) == ["d3"]
    assert isinstance(open_index(small_index(tmp_path / "n", DOCS).path), SparseIndex)


class ElsewhereIndex(pt.Artifact):
    """Another package's sparse_index format."""

    def __init__(self, path, verbose=True):
        super().__init__(path)
        self.verbose = verbose


def test_open_index_defers_to_the_artifact_registry(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    from pyterrier_disco.index import open_index

    index = small_index(tmp_path / "n", DOCS)
    assert type(pt.Artifact.load(str(index.path))) is SparseIndex
    assert open_index(index.path, threads=3).threads == 3  # kwargs reach the artifact's constructor
    # another package's sparse_index format opens through its entry point (e.g. a sharded index)
    other = tmp_path / "other"
    other.mkdir()
    (other / "pt_meta.json").write_text(json.dumps({"type": "sparse_index", "format": "elsewhere"}))
    with pytest.raises(CorruptIndexError, match="sparse_index.elsewhere.*No implementation"):
        open_index(other)
    registered = pt.utils.entry_points("pyterrier.artifact") + (
        EntryPoint("sparse_index.elsewhere", f"{__name__}:ElsewhereIndex", "pyterrier.artifact"),)
    monkeypatch.setattr(pt.utils, "entry_points", lambda group: registered if group == "pyterrier.artifact" else ())
    opened = open_index(other, verbose=False)
    assert type(opened) is ElsewhereIndex and opened.path == other and opened.verbose is False
    (other / "pt_meta.json").write_text(json.dumps({"type": "disco_student", "format": "hf"}))
    with pytest.raises(CorruptIndexError, match="disco_student.hf artifact, not a sparse index"):
        open_index(other)
    (other / "pt_meta.json").write_text("{")
    with pytest.raises(CorruptIndexError, match="not valid JSON"):
        open_index(other)
    with pytest.raises(FileNotFoundError, match="pt_meta.json is missing"):
        open_index(tmp_path / "nothing")


def test_pisa_refuses_all_empty_documents(tmp_path):
    pisa = new_index(tmp_path / "p", backend="pisa", verbose=False)
    with pytest.raises(ValueError, match="empty"):
        pisa.indexer().index([{"docno": "d1", "toks": {}}, {"docno": "d2", "toks": {"a": 0.0}}])
    with pytest.raises(ValueError, match="unknown index backend"):
        new_index(tmp_path / "x", backend="lucene")


def test_flops_and_query_length_match_the_formula(splade_model, ikat_index, queries):
    _, doc_matrix = ikat_index
    q = splade_model.to_csr(list(queries["query_toks"]))
    pq = (q.toarray() > 0).mean(axis=0)
    pd_ = (doc_matrix.toarray() > 0).mean(axis=0)
    assert flops(q, doc_matrix) == pytest.approx(float(pq @ pd_), rel=1e-9)
    assert flops(list(queries["query_toks"]), splade_model.to_dicts(doc_matrix)) == pytest.approx(float(pq @ pd_))
    assert query_length(q) == pytest.approx(np.mean([len(t) for t in queries["query_toks"]]))


def _tied_collection(n_docs=300, n_terms=40, seed=3, density=0.15):
    """Weights in multiples of 1/4 and query weights in {0.5, 1, 2}: float32 sums are exact, ties abound."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    matrix = sp.random(n_docs, n_terms, density=density, format="csr", random_state=seed,
                       data_rvs=lambda n: rng.integers(1, 5, size=n) / 4).astype(np.float32)
    matrix = sp.csr_matrix(matrix.multiply(np.arange(n_docs)[:, None] % 37 != 0))  # some empty documents
    matrix.eliminate_zeros()
    return matrix, rng


def _check_engine(matrix, rng, threads, ks, tmp_path):
    from pyterrier_disco.index import index_from_csr
    from pyterrier_disco.index._scoring import search

    n_terms = matrix.shape[1]
    index = index_from_csr(tmp_path / "idx", matrix, [f"d{i}" for i in range(matrix.shape[0])],
                           [f"t{j}" for j in range(n_terms)])
    arrays, docnos, _ = index._load()
    queries = [(np.sort(rng.choice(n_terms, size=n, replace=False)), rng.choice([0.5, 1.0, 2.0], size=n))
               for n in (1, 3, 10, n_terms)]
    for k in ks:
        batch = search(arrays, len(docnos), queries, k, threads=threads)  # threads share the queries
        for q, (terms, weights) in enumerate(queries):
            exact = matrix[:, terms].toarray().astype(np.float64) @ weights
            positive = np.flatnonzero(exact > 0)
            expected = positive[np.lexsort((positive, -exact[positive]))][:k]  # score desc, then doc id
            alone = search(arrays, len(docnos), [queries[q]], k, threads=threads)  # threads share the blocks
            for doc_ids, scores, counts in (batch, alone):
                row = 0 if doc_ids is alone[0] else q
                assert list(doc_ids[row, :counts[row]]) == list(expected)
                assert list(scores[row, :counts[row]]) == list(exact[expected])


@pytest.mark.parametrize("threads", [1, 2, 3, None])
def test_engine_equals_brute_force_with_ties(tmp_path, threads):
    matrix, rng = _tied_collection()
    _check_engine(matrix, rng, threads, (1, 5, 1000), tmp_path)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_engine_over_several_blocks_equals_brute_force(tmp_path, threads):
    """Over 3 blocks of 65536 documents (block-local doc ids, a short last block), with posting lists far
    longer than the 16 vector lanes and ties across block and thread boundaries."""
    from pyterrier_disco.index._scoring import BLOCK_DOCS

    matrix, rng = _tied_collection(n_docs=2 * BLOCK_DOCS + 777, n_terms=12, seed=5, density=0.02)
    _check_engine(matrix, rng, threads, (1, 50, 3000), tmp_path)


def test_streaming_indexer_spills_chunks_and_equals_the_csr_build(monkeypatch, tmp_path):
    from pyterrier_disco.index import SparseIndexer, index_from_csr

    monkeypatch.setattr(SparseIndexer, "CHUNK_POSTINGS", 50)
    matrix, _ = _tied_collection()
    terms = [f"t{j}" for j in range(matrix.shape[1])]
    records = ({"docno": f"d{i}", "toks": {terms[j]: float(matrix[i, j]) for j in matrix[i].indices}}
               for i in range(matrix.shape[0]))
    streamed = SparseIndex(tmp_path / "streamed").indexer(verbose=False).index(records)
    direct = index_from_csr(tmp_path / "direct", matrix, [f"d{i}" for i in range(matrix.shape[0])], terms)
    (a_arrays, a_docnos, a_lex), (b_arrays, b_docnos, b_lex) = streamed._load(), direct._load()
    assert list(a_docnos) == list(b_docnos)
    assert not list((tmp_path / "streamed").glob(".chunk-*")), "spilled chunks must be removed"
    columns = matrix.tocsc()
    for term, j in b_lex.items():
        truth = columns[:, j]
        for index in (streamed, direct):
            ids, weights = index.postings(term)  # global ids rebuilt from the block table
            assert list(ids) == list(truth.indices) and list(weights) == list(truth.data)
        if term in a_lex:  # the lexicons differ in order: compare positions within the posting list
            a_row, b_row = a_arrays["blocks"][a_lex[term]], b_arrays["blocks"][j]
            assert list(a_row - a_row[0]) == list(b_row - b_row[0])
    assert isinstance(a_arrays["doc_ids"], np.memmap)  # loaded memory-mapped


def test_streamed_block_table_over_several_blocks(monkeypatch, tmp_path):
    from pyterrier_disco.index import SparseIndexer, index_from_csr
    from pyterrier_disco.index._scoring import BLOCK_DOCS

    monkeypatch.setattr(SparseIndexer, "CHUNK_POSTINGS", 5000)
    matrix, _ = _tied_collection(n_docs=2 * BLOCK_DOCS + 10, n_terms=6, seed=8, density=0.01)
    terms = [f"t{j}" for j in range(matrix.shape[1])]
    records = ({"docno": f"d{i}", "toks": {terms[j]: float(w) for j, w in zip(matrix[i].indices, matrix[i].data)}}
               for i in range(matrix.shape[0]))
    streamed = SparseIndex(tmp_path / "s").indexer(verbose=False).index(records)
    direct = index_from_csr(tmp_path / "d", matrix, [f"d{i}" for i in range(matrix.shape[0])], terms)
    (a, _, a_lex), (b, _, b_lex) = streamed._load(), direct._load()
    for term in terms:
        a_row, b_row = a["blocks"][a_lex[term]], b["blocks"][b_lex[term]]
        assert len(a_row) == 4 and list(a_row - a_row[0]) == list(b_row - b_row[0])
        assert list(streamed.postings(term)[0]) == list(matrix.tocsc()[:, b_lex[term]].indices)
    q = pd.DataFrame({"qid": ["1"], "query_toks": [{"t0": 1.0, "t3": 2.0}]})
    pd.testing.assert_frame_equal(streamed.retriever(num_results=500)(q), direct.retriever(num_results=500)(q))


def test_block_table_and_older_indexes(tmp_path):
    from pyterrier_disco.index import index_from_csr

    matrix, _ = _tied_collection()
    terms, docnos = [f"t{j}" for j in range(matrix.shape[1])], [f"d{i}" for i in range(matrix.shape[0])]
    q = pd.DataFrame({"qid": ["1"], "query_toks": [{"t1": 1.0, "t7": 0.5, "t30": 2.0}]})
    index = index_from_csr(tmp_path / "i", matrix, docnos, terms)
    expected = index.retriever(num_results=20)(q)
    # an index written before the block table (and the checksums): global int32 doc ids, no blocks.npy
    np.save(tmp_path / "i" / "doc_ids.npy", matrix.tocsc().indices.astype(np.int32))
    (tmp_path / "i" / "blocks.npy").unlink()
    meta = json.loads((tmp_path / "i" / "pt_meta.json").read_text())
    del meta["files"]
    (tmp_path / "i" / "pt_meta.json").write_text(json.dumps(meta))
    pd.testing.assert_frame_equal(SparseIndex(tmp_path / "i").retriever(num_results=20)(q), expected)
    broken = index_from_csr(tmp_path / "b", matrix, docnos, terms)
    blocks = np.load(tmp_path / "b" / "blocks.npy")
    np.save(tmp_path / "b" / "blocks.npy", blocks[:, ::-1].copy())
    with pytest.raises(CorruptIndexError, match="blocks.npy does not match the sha256"):
        broken.retriever()(q)
    meta = json.loads((tmp_path / "b" / "pt_meta.json").read_text())
    del meta["files"]  # without checksums, the structural check still sees it
    (tmp_path / "b" / "pt_meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptIndexError, match="blocks.npy does not match offsets"):
        SparseIndex(tmp_path / "b").retriever()(q)
    (tmp_path / "b" / "blocks.npy").unlink()
    with pytest.raises(CorruptIndexError, match="blocks.npy"):
        SparseIndex(tmp_path / "b").retriever()(q)


def test_queries_that_would_rank_silently_wrong_are_refused_naming_the_row(tmp_path):
    index = small_index(tmp_path / "i", DOCS)
    retriever = index.retriever(num_results=10)
    twice = pd.DataFrame({"qid": ["1", "2", "1"], "query_toks": [{"a": 1.0}, {"b": 1.0}, {"c": 1.0}]})
    with pytest.raises(ValueError, match=r"qid '1' appears on rows \[0, 2\]"):
        retriever(twice)
    for weights, row in (({"a": -1.0}, 1), ({"a": float("nan")}, 1), ({"c": float("inf")}, 1), ({"a": "x"}, 1)):
        bad = pd.DataFrame({"qid": ["ok", "bad"], "query_toks": [{"a": 1.0}, weights]})
        with pytest.raises(ValueError, match=rf"query 'bad' \(row {row}\) hold negative, NaN"):
            retriever(bad)
    lone = pd.DataFrame({"qid": ["1"], "query_toks": [{f"▁tok{i}": 1.0 for i in range(8)}]})
    with pytest.raises(ValueError, match="another vocabulary"):
        retriever(lone)
    # more results than documents: every document, without buffers of the asked size
    everything = index.retriever(num_results=10 ** 9)
    res = everything(pd.DataFrame({"qid": ["1"], "query_toks": [{"a": 1.0, "b": 1.0, "c": 1.0}]}))
    assert sorted(res["docno"]) == ["d1", "d2", "d3"] and list(res["rank"]) == [0, 1, 2]
    for bad in (0, 2.5, True, "10"):
        with pytest.raises(ValueError, match="num_results"):
            index.retriever(num_results=bad)


def test_verify_finds_damage_of_the_same_size(tmp_path):
    from pyterrier_disco.index import index_from_csr
    import scipy.sparse as sp

    matrix = sp.random(70_000, 40, density=0.05, format="csr", random_state=1, dtype=np.float32)
    matrix.data += 0.01
    terms, docnos = [f"t{j}" for j in range(40)], [f"d{i}" for i in range(70_000)]
    index = index_from_csr(tmp_path / "i", matrix, docnos, terms)
    report = index.verify()
    assert report["files_hashed"] == 7 and report["num_postings"] == matrix.nnz
    meta_file = tmp_path / "i" / "pt_meta.json"
    meta = json.loads(meta_file.read_text())
    pristine = {f: (tmp_path / "i" / f).read_bytes() for f in meta["files"]}

    def damaged(name, array=None, text=None, keep_checksums=True):
        for f, data in pristine.items():
            (tmp_path / "i" / f).write_bytes(data)
        if array is not None:
            np.save(tmp_path / "i" / name, array)
        if text is not None:
            (tmp_path / "i" / name).write_text(text)
        meta_file.write_text(json.dumps(meta if keep_checksums else {k: v for k, v in meta.items() if k != "files"}))
        return SparseIndex(tmp_path / "i")

    weights = np.load(tmp_path / "i" / "weights.npy")
    with pytest.raises(CorruptIndexError, match="weights.npy does not match the sha256"):
        damaged("weights.npy", weights[::-1].copy()).verify()
    nan = weights.copy()
    nan[5] = np.nan
    with pytest.raises(CorruptIndexError, match="not finite and positive"):  # without checksums: the values
        damaged("weights.npy", nan, keep_checksums=False).verify()
    ids = np.load(tmp_path / "i" / "doc_ids.npy")
    blocks = np.load(tmp_path / "i" / "blocks.npy")
    beyond = ids.copy()
    beyond[blocks[0, 1]] = 65535  # in the last block, which holds 70000 - 65536 documents
    with pytest.raises(CorruptIndexError, match="doc ids beyond the 70000 documents"):
        damaged("doc_ids.npy", beyond, keep_checksums=False).verify()
    with pytest.raises(CorruptIndexError, match="lists a term twice"):
        damaged("lexicon.json", text=json.dumps(["t0"] + terms[1:-1] + ["t0"]), keep_checksums=False).verify()
    with pytest.raises(CorruptIndexError, match="lexicon.json does not match the sha256"):  # checked on open too
        damaged("lexicon.json", text=json.dumps(terms[::-1])).retriever()(
            pd.DataFrame({"qid": ["1"], "query_toks": [{"t1": 1.0}]}))
    assert damaged("lexicon.json").verify() == report


def test_an_index_records_what_it_was_built_from(tmp_path):
    from types import SimpleNamespace

    from pyterrier_disco.index.build import check_index_source

    model = SimpleNamespace(source=None, name="splade-tiny (embedded)", vocab_fingerprint="v1")
    splade = SimpleNamespace(doc_model=model)
    index = SparseIndex(tmp_path / "i", verbose=False)
    index.indexer(vocab="v1", info={"dataset": "disco-mini/train", "doc_model": None,
                                    "doc_model_name": model.name}).index([{"docno": "d", "toks": {"a": 1.0}}])
    check_index_source(index, "disco-mini/train", splade)
    with pytest.raises(ValueError, match="built from the dataset 'disco-mini/train', not 'disco-mini/test'"):
        check_index_source(index, "disco-mini/test", splade)
    other = SimpleNamespace(doc_model=SimpleNamespace(source="org/model", name="org/model", vocab_fingerprint="v1"))
    with pytest.raises(ValueError, match="document model 'splade-tiny .embedded.', not 'org/model'"):
        check_index_source(index, "disco-mini/train", other)
    with pytest.raises(ValueError, match="negative or NaN"):
        SparseIndex(tmp_path / "n", verbose=False).indexer().index([{"docno": "d", "toks": {"a": float("nan")}}])
    assert not (tmp_path / "n").exists()
