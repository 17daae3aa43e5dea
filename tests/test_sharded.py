"""Sharded indexes: exact merging against one index, the manifest's checks, resumable builds, in-process and on
a local 2-CPU Ray cluster (tests marked ``ray``: ``make test`` runs them in their own step)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import scipy.sparse as sp

import pyterrier_disco as disco
from pyterrier_disco.index import CorruptIndexError, ShardedIndex, SparseIndex, build_sharded, open_index
from pyterrier_disco.index.shard_build import BUILD, FAILPOINT, finished_shard


@pytest.fixture(scope="module")
def ikat_queries(splade_model, ikat_home):
    """Real iKAT 2023 turns encoded three ways: raw utterance, human rewrite, DiSCo (conversation encoder)."""
    topics = disco.conversations("ikat/2023/train").head(24)
    splade = disco.Splade(splade_model)
    return {"raw": splade.query_encoder()(topics),
            "rewrite": (disco.rewrite.Column("human_rewrite") >> splade.query_encoder())(topics),
            "disco": disco.DiSCo.from_models(splade_model).query_encoder()(topics)}


@pytest.fixture(scope="module")
def ikat_records(ikat_index, ikat_passages, splade_model):
    """The iKAT passages with the very vectors the single index ``ikat_index`` holds."""
    _, doc_matrix = ikat_index
    return pd.DataFrame({"docno": ikat_passages["docno"], "toks": splade_model.to_dicts(doc_matrix)})


def tie_collection(n_docs=97, seed=0):
    """Documents whose weights come from a handful of values, so that many share a score, across shard bounds."""
    rng = np.random.default_rng(seed)
    toks = [{f"t{j}": float(rng.choice([0.5, 1.0, 2.0])) for j in rng.choice(6, rng.integers(1, 4), replace=False)}
            for _ in range(n_docs)]
    return pd.DataFrame({"docno": [f"d{i}" for i in range(n_docs)], "toks": toks})


def brute_force(docs: pd.DataFrame, query: dict, k: int):
    """(docnos, scores) of the top k by float32 dot product (terms added in query order), ties by position."""
    scores = np.zeros(len(docs), np.float32)
    for term, weight in query.items():
        for i, toks in enumerate(docs["toks"]):
            if term in toks:
                scores[i] += np.float32(weight) * np.float32(toks[term])
    order = sorted(np.flatnonzero(scores > 0), key=lambda i: (-scores[i], i))[:k]
    return [docs["docno"][i] for i in order], scores[order].astype(np.float64)


def single_index(path, docs: pd.DataFrame, vocab=None) -> SparseIndex:
    index = SparseIndex(path, verbose=False)
    index.indexer(vocab=vocab, verbose=False).index(docs.to_dict("records"))
    return index


def assert_same_results(expected: pd.DataFrame, got: pd.DataFrame):
    pd.testing.assert_frame_equal(expected.reset_index(drop=True), got.reset_index(drop=True))


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_merge_equals_one_index_and_brute_force_with_ties(tmp_path, shards):
    docs = tie_collection()
    single = single_index(tmp_path / "single", docs)
    sharded = build_sharded(docs, tmp_path / "sharded", shards=shards, verbose=False)
    queries = pd.DataFrame({"qid": ["a", "b", "c", "d"],
                            "query_toks": [{"t0": 1.0}, {"t1": 0.5, "t2": 2.0}, {"t3": 1.0, "t4": 1.0, "t5": 0.5},
                                           {"t5": 3.0, "t0": 0.25}]})
    for k in (1, 5, 13, 200):  # cut-offs inside runs of tied scores, and beyond the collection
        expected = single.retriever(k)(queries)
        assert_same_results(expected, sharded.retriever(k)(queries))
        row_of = (expected["rank"] == 0).cumsum() - 1  # every query here has results
        for row, toks in enumerate(queries["query_toks"]):
            got = expected[row_of == row]
            docnos, scores = brute_force(docs, toks, k)
            assert list(got["docno"]) == docnos and np.array_equal(got["score"].to_numpy(), scores)
    assert len(sharded) == len(docs) and list(sharded.docnos) == list(docs["docno"])
    sizes = [s["num_docs"] for s in sharded.meta["shards"]]
    assert sum(sizes) == 97 and max(sizes) - min(sizes) <= 1
    assert [s["offset"] for s in sharded.meta["shards"]] == list(np.cumsum([0] + sizes[:-1]))


def test_ikat_raw_rewrite_and_disco_queries_equal_the_single_index(tmp_path, ikat_index, ikat_records, ikat_queries,
                                                                    splade_model):
    index, _ = ikat_index
    sharded = build_sharded(ikat_records, tmp_path / "sharded", shards=3, vocab=splade_model.vocab_fingerprint,
                            verbose=False)
    assert isinstance(pt.Artifact.load(str(tmp_path / "sharded")), ShardedIndex)
    assert isinstance(open_index(tmp_path / "sharded"), ShardedIndex)
    for kind, queries in ikat_queries.items():
        expected = index.retriever(50)(queries)
        assert expected["qid"].nunique() == len(queries), kind
        assert_same_results(expected, sharded.retriever(50)(queries))
    retriever = sharded.retriever(50)
    assert retriever.fuse_rank_cutoff(10).num_results == 10 and retriever.fuse_rank_cutoff(100) is None
    assert pt.inspect.transformer_outputs(retriever, ["qid", "query_toks"]) == ["qid", "query_toks", "docno",
                                                                                 "score", "rank"]


def test_retriever_validates_like_the_single_index(tmp_path):
    docs = tie_collection(20)
    sharded = build_sharded(docs, tmp_path / "s", shards=2, vocab="v1", verbose=False)
    retriever = sharded.retriever(5)
    with pytest.raises(pt.validate.InputValidationError):
        retriever(pd.DataFrame({"qid": ["1"], "query": ["no toks"]}))
    empty = retriever(pd.DataFrame({"qid": [], "query_toks": []}))
    assert len(empty) == 0 and list(empty.columns) == ["qid", "query_toks", "docno", "score", "rank"]
    no_terms = retriever(pd.DataFrame({"qid": ["1", "2"], "query_toks": [{}, {"unknown": 1.0}]}))
    assert len(no_terms) == 0
    stamped = pd.DataFrame({"qid": ["1"], "query_toks": [{"t0": 1.0}]})
    stamped.attrs["vocab"] = "other"
    with pytest.raises(ValueError, match="vocabulary other"):
        retriever(stamped)
    with pytest.raises(ValueError, match="another vocabulary"):
        retriever(pd.DataFrame({"qid": list("abcde"), "query_toks": [{f"x{i}": 1.0} for i in range(5)]}))
    with pytest.raises(TypeError, match="query 'q'"):
        retriever(pd.DataFrame({"qid": ["q"], "query_toks": ["not a dict"]}))
    with pytest.raises(ValueError, match="num_results"):
        sharded.retriever(0)


def test_manifest_refuses_missing_truncated_and_other_model_shards(tmp_path):
    docs = tie_collection(60)
    out = tmp_path / "s"
    build_sharded(docs, out, shards=3, vocab="v1", verbose=False)
    entry = json.loads((out / "pt_meta.json").read_text())["shards"][1]
    assert set(entry["files"]) >= {"pt_meta.json", "weights.npy", "doc_ids.npy", "docnos.npy", "lexicon.json"}
    ShardedIndex(out).verify()
    weights = out / "shard-00001" / "weights.npy"
    original = weights.read_bytes()
    weights.write_bytes(original[:-8])
    with pytest.raises(CorruptIndexError, match="shard shard-00001 .*truncated.*weights.npy"):
        ShardedIndex(out).retriever(5)(pd.DataFrame({"qid": ["1"], "query_toks": [{"t0": 1.0}]}))
    weights.write_bytes(original[:-4] + bytes(4))  # same size, other bytes: only the checksums see it
    ShardedIndex(out).shards()
    with pytest.raises(CorruptIndexError, match="shard shard-00001 .*checksum.*weights.npy"):
        ShardedIndex(out).verify()
    weights.write_bytes(original)
    other = tmp_path / "other"  # the same documents indexed for another document model
    single_index(other, docs.iloc[entry["offset"]:entry["offset"] + entry["num_docs"]], vocab="v2")
    os.rename(out / "shard-00001", tmp_path / "kept")
    os.rename(other, out / "shard-00001")
    with pytest.raises(CorruptIndexError, match="shard shard-00001 .*another document model: vocabulary v2"):
        ShardedIndex(out).shards()
    (out / "shard-00001").rename(tmp_path / "gone")
    with pytest.raises(CorruptIndexError, match="shard shard-00001 .*missing"):
        ShardedIndex(out).retriever(5)(pd.DataFrame({"qid": ["1"], "query_toks": [{"t0": 1.0}]}))
    (tmp_path / "kept").rename(out / "shard-00001")
    assert len(ShardedIndex(out).retriever(100)(pd.DataFrame({"qid": ["1"], "query_toks": [{"t0": 1.0}]}))) > 0


def test_build_checks_its_folder_and_plan(tmp_path):
    docs = tie_collection(10)
    with pytest.raises(ValueError, match="cannot split 10 documents into 11 shards"):
        build_sharded(docs, tmp_path / "a", shards=11, verbose=False)
    with pytest.raises(KeyError, match="docno"):
        build_sharded(pd.DataFrame({"text": ["x"]}), tmp_path / "a", shards=1, verbose=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match="not a sharded index"):
        build_sharded(docs, foreign, shards=2, overwrite=True, verbose=False)
    assert (foreign / "notes.txt").exists()
    build_sharded(docs, tmp_path / "b", shards=2, verbose=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        build_sharded(docs, tmp_path / "b", shards=2, verbose=False)
    rebuilt = build_sharded(docs.iloc[:8], tmp_path / "b", shards=4, overwrite=True, verbose=False)
    assert len(rebuilt) == 8 and len(rebuilt.meta["shards"]) == 4 and not (tmp_path / "b" / BUILD).exists()


def _killed_run(out: Path, shards: int, docs_file: Path, failpoint: str) -> subprocess.CompletedProcess:
    code = ("import sys, pandas as pd; from pyterrier_disco.index import build_sharded; "
            f"build_sharded(pd.read_json({str(docs_file)!r}, lines=True, dtype={{'docno': str}}), "
            f"{str(out)!r}, shards={shards}, verbose=False)")
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, FAILPOINT: failpoint},
                          capture_output=True, text=True)


def test_a_killed_build_keeps_finished_shards_and_resumes(tmp_path):
    docs = tie_collection(90)
    docs_file = tmp_path / "docs.jsonl"
    docs.to_json(docs_file, orient="records", lines=True)
    out = tmp_path / "s"
    run = _killed_run(out, 3, docs_file, "shard-00001:20")  # the process dies inside the second shard
    assert run.returncode == 70, run.stderr
    plan = json.loads((out / BUILD / "plan.json").read_text())
    first, second, third = plan["shards"]
    assert not (out / "pt_meta.json").exists()
    assert finished_shard(out, first, None) is not None
    assert finished_shard(out, second, None) is None and not (out / "shard-00001").exists()
    assert list(out.glob(".shard-00001.*.tmp"))  # its half-written folder, never renamed into place
    kept = (out / "shard-00000").stat().st_ino
    sharded = build_sharded(docs, out, shards=3, verbose=False)
    assert (out / "shard-00000").stat().st_ino == kept  # not rebuilt
    assert not list(out.glob(".*.tmp")) and not (out / BUILD).exists()
    queries = pd.DataFrame({"qid": ["1", "2"], "query_toks": [{"t1": 1.0}, {"t2": 1.0, "t4": 0.5}]})
    assert_same_results(single_index(tmp_path / "single", docs).retriever(30)(queries), sharded.retriever(30)(queries))
    with pytest.raises(ValueError, match="num_docs"):  # an unfinished build of other documents is not mixed in
        _killed_run(out / "x", 2, docs_file, "shard-00001:5")
        build_sharded(docs.iloc[:50], out / "x", shards=2, verbose=False)


def test_ray_is_optional(monkeypatch):
    probe = "import sys, pyterrier_disco, pyterrier_disco.index; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    from pyterrier_disco.index._ray import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"pip install 'pyterrier-disco\[ray\]'"):
        require_ray()


# -- on a local Ray cluster ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
def test_an_unreachable_ray_address_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    from pyterrier_disco.cli import main

    code = main(["index", "--dataset", "disco-mini/test", "--out", str(tmp_path / "x"), "--shards", "2",
                 "--ray", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot reach the Ray cluster at 127.0.0.1:9" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.ray
def test_ray_actors_search_exactly_like_the_single_index(ray_cluster, tmp_path, ikat_index, ikat_records,
                                                         ikat_queries, splade_model):
    index, _ = ikat_index
    sharded = build_sharded(ikat_records, tmp_path / "s", shards=3, vocab=splade_model.vocab_fingerprint,
                            ray=True, verbose=False)
    retriever = sharded.retriever(50, ray=True)
    for kind, queries in ikat_queries.items():
        assert_same_results(index.retriever(50)(queries), retriever(queries))
    retriever.close()
    (tmp_path / "s" / "shard-00002" / "lexicon.json").unlink()
    with pytest.raises(CorruptIndexError, match="shard shard-00002 .*lexicon.json is missing"):
        sharded.retriever(10, ray=True)(ikat_queries["raw"])


@pytest.mark.ray
def test_ray_data_encodes_and_shards_the_passages(ray_cluster, tmp_path, ikat_passages, ikat_queries, splade_model):
    sharded = build_sharded(ikat_passages, tmp_path / "s", shards=3, splade=disco.Splade(splade_model), ray=True,
                            batch_size=16, workers=2, verbose=False)
    assert list(sharded.docnos) == list(ikat_passages["docno"])
    assert sharded.meta["vocab"] == splade_model.vocab_fingerprint
    # every passage's vector equals the plain encoder's (up to batch-dependent float rounding)
    vectors = sp.vstack([shard_matrix(shard, splade_model) for shard in sharded.shards()]).tocsr()
    plain = splade_model.encode(list(ikat_passages["text"]))
    assert vectors.shape == plain.shape and abs(vectors - plain).max() < 1e-4
    # and the shards search exactly like one index over the same vectors
    records = pd.DataFrame({"docno": ikat_passages["docno"], "toks": splade_model.to_dicts(vectors)})
    single = single_index(tmp_path / "single", records, vocab=splade_model.vocab_fingerprint)
    on_ray = sharded.retriever(20, ray=True)
    for kind, queries in ikat_queries.items():
        assert_same_results(single.retriever(20)(queries), on_ray(queries))
    on_ray.close()


def shard_matrix(shard: SparseIndex, splade_model) -> sp.csr_matrix:
    """A shard's postings as a (documents x model vocabulary) matrix."""
    vocab = splade_model.tokenizer.get_vocab()
    rows, cols, values = [], [], []
    for term in shard._load()[2]:
        ids, weights = shard.postings(term)
        rows.append(ids)
        cols.append(np.full(len(ids), vocab[term]))
        values.append(weights)
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(shard), len(vocab)))


@pytest.mark.ray
def test_a_worker_dying_mid_shard_leaves_it_unfinished_and_a_rerun_builds_it(ray_cluster, tmp_path, monkeypatch):
    docs = tie_collection(150)
    out = tmp_path / "s"
    monkeypatch.setenv(FAILPOINT, "shard-00001:30")
    with pytest.raises(RuntimeError, match="shard-00001 .*rerun"):
        build_sharded(docs, out, shards=3, ray=True, verbose=False)
    plan = json.loads((out / BUILD / "plan.json").read_text())["shards"]
    assert finished_shard(out, plan[1], None) is None and not (out / "shard-00001").exists()
    assert finished_shard(out, plan[0], None) and finished_shard(out, plan[2], None)
    assert not (out / "pt_meta.json").exists()
    kept = [(out / f"shard-0000{i}").stat().st_ino for i in (0, 2)]
    monkeypatch.delenv(FAILPOINT)
    sharded = build_sharded(docs, out, shards=3, ray=True, verbose=False)
    assert [(out / f"shard-0000{i}").stat().st_ino for i in (0, 2)] == kept
    queries = pd.DataFrame({"qid": ["1", "2"], "query_toks": [{"t1": 1.0}, {"t2": 1.0, "t4": 0.5}]})
    assert_same_results(single_index(tmp_path / "single", docs).retriever(40)(queries),
                        sharded.retriever(40, ray=True)(queries))


@pytest.mark.ray
def test_cli_index_on_ray(ray_cluster, tmp_path, capsys):
    from pyterrier_disco.cli import main

    out = tmp_path / "mini"
    assert main(["index", "--dataset", "disco-mini/test", "--out", str(out), "--ray", "--shards", "2"]) == 0
    assert "2 shards" in capsys.readouterr().out
    index = open_index(out)
    passages = list(disco.index.dataset_docs("disco-mini/test"))
    assert isinstance(index, ShardedIndex) and list(index.docnos) == [p["docno"] for p in passages]
    assert main(["index", "--dataset", "disco-mini/test", "--out", str(out), "--ray", "--shards", "2"]) == 2
    assert "overwrite" in capsys.readouterr().err
