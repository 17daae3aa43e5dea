"""Every transformer of the package honours ``pt.inspect`` (modelled on pyterrier's tests/test_inspect.py):
the inputs it reports are what it validates, the outputs it reports are the columns it returns (on real
frames and on empty ones), its attributes are its constructor's arguments, ``transformer_apply_attributes``
rebuilds an equal transformer, wrappers list their ``subtransformers``, and rank cutoffs fuse into retrievers.
Inspecting a rewriter never loads its model.

``test_every_transformer_is_covered`` fails when a transformer class is added to the package without a
case here."""
import importlib
import inspect
import json
import pkgutil

import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_disco
from pyterrier_disco import DiSCo, Fusion, Splade, new_index
from pyterrier_disco.rewrite import Column, LLMRewriter, RewriteCache, RewriteColumns, T5Rewriter
from pyterrier_disco.rewrite.cache import cache_key
from pyterrier_disco.index import build_sharded

ABSTRACT = {"pyterrier_disco.encoders._Encoder", "pyterrier_disco.rewrite.base.QueryRewriter",
            "pyterrier_disco.rewrite.base.GenerativeRewriter"}
DOCS = pd.DataFrame({"docno": ["d1", "d2", "d3", "d4"], "text": [
    "Sunglasses protect the eyes from ultraviolet light on sunny days.",
    "An optician sells glasses and sunglasses; prices start at twenty euros.",
    "Sunscreen with a high SPF is advised when the UV index is high.",
    "The weather today is sunny with a light breeze."]})
HISTORY = [{"role": "user", "text": "should I wear sunscreen?"},
           {"role": "system", "text": "yes, the UV index is high."},
           {"role": "user", "text": "do I need sunglasses?"}, {"role": "system", "text": "definitely."}]
CONVERSATIONS = pd.DataFrame({"qid": ["1_1", "1_3"], "query": ["should I wear sunscreen?", "where can I buy them?"],
                              "history": [[], HISTORY],
                              "human_rewrite": ["should I wear sunscreen?", "where can I buy sunglasses?"]})


class Satisfies:
    """An expected attribute value given by a predicate."""

    def __init__(self, check):
        self.check = check


def _name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def package_transformers():
    """Every pt.Transformer (pt.Indexer included) class defined in the package."""
    found = set()
    for module in pkgutil.walk_packages(pyterrier_disco.__path__, "pyterrier_disco."):
        for obj in vars(importlib.import_module(module.name)).values():
            if isinstance(obj, type) and issubclass(obj, pt.Transformer) \
                    and obj.__module__.startswith("pyterrier_disco"):
                found.add(_name(obj))
    return found


@pytest.fixture(scope="module")
def env(splade_model, tmp_path_factory):
    """Real transformers over the embedded SPLADE-tiny, a numba and a PISA index of DOCS, cached rewriters."""
    root = tmp_path_factory.mktemp("inspect")
    splade = Splade(splade_model)
    encoded = splade.doc_encoder()(DOCS)
    numba = new_index(root / "numba", verbose=False)
    numba.indexer(vocab=splade_model.vocab_fingerprint).index(encoded.to_dict("records"))
    pisa = new_index(root / "pisa", backend="pisa", verbose=False)
    pisa.indexer().index(encoded.to_dict("records"))
    sharded = build_sharded(encoded[["docno", "toks"]], root / "sharded", shards=2,
                            vocab=splade_model.vocab_fingerprint, verbose=False)
    fake_llm = root / "llm"  # a model folder that is never loaded: every generation is in the cache
    fake_llm.mkdir()
    (fake_llm / "config.json").write_text(json.dumps({"model_type": "llama"}))
    cache = RewriteCache(root / "rewrites.sqlite")
    llm = LLMRewriter(str(fake_llm), prompt=lambda utterance, history: f"rewrite: {utterance}", policy="rewrite",
                      cache=cache)
    t5 = T5Rewriter("castorini/t5-base-canard", cache=cache)
    for rewriter in (llm, t5):
        inputs = rewriter.model_inputs(list(CONVERSATIONS["query"]), list(CONVERSATIONS["history"]))
        cache.put_many({cache_key(rewriter.cache_settings(), text): f"{text} (rewritten)" for text in inputs})
    return dict(splade=splade, numba=numba, pisa=pisa, sharded=sharded, llm=llm, t5=t5, fake_llm=str(fake_llm),
                cache=cache, disco=DiSCo.from_models(splade_model, utterance_weight=0.5))


def results_frame(env):
    res = (env["splade"].query_encoder() >> env["numba"].retriever(num_results=3))(CONVERSATIONS[["qid", "query"]])
    return res.merge(DOCS, on="docno")


# class -> (transformer, input frame, the input columns it must report, its subtransformers, attributes to check)
CASES = {
    "pyterrier_disco.encoders.SpladeQueryEncoder": lambda e: (
        e["splade"].query_encoder(batch_size=2), CONVERSATIONS[["qid", "query"]], ["query"], {},
        {"batch_size": 2, "verbose": False}),
    "pyterrier_disco.encoders.SpladeDocEncoder": lambda e: (
        e["splade"].doc_encoder(), DOCS, ["text"], {}, {"model": e["splade"].doc_model}),
    "pyterrier_disco.encoders.ConversationQueryEncoder": lambda e: (
        e["disco"].query_encoder(), CONVERSATIONS, ["query", "history"], {},
        {"formatter": e["disco"].formatter, "utterance_weight": 0.5}),
    "pyterrier_disco.encoders.SpladeScorer": lambda e: (
        e["splade"].scorer(), results_frame(e), ["qid", "docno", "query", "text"], {},
        {"query_model": e["splade"].query_model, "doc_model": e["splade"].doc_model}),
    "pyterrier_disco.index.retriever.SparseRetriever": lambda e: (
        e["numba"].retriever(num_results=3), e["disco"].query_encoder()(CONVERSATIONS), ["qid", "query_toks"], {},
        {"index": e["numba"], "num_results": 3}),
    "pyterrier_disco.index.sharded.ShardedRetriever": lambda e: (
        e["sharded"].retriever(num_results=3), e["disco"].query_encoder()(CONVERSATIONS), ["qid", "query_toks"], {},
        {"index": e["sharded"], "num_results": 3, "ray": None}),
    "pyterrier_disco.index.pisa._QuietPisaRetriever": lambda e: (
        e["pisa"].retriever(num_results=3), e["disco"].query_encoder()(CONVERSATIONS), ["qid", "query_toks"],
        {"retriever": e["pisa"].retriever(num_results=3).retriever}, {}),
    "pyterrier_disco.fusion.Fusion": lambda e: fusion_case(e),
    "pyterrier_disco.rewrite.base.Column": lambda e: (
        Column("human_rewrite"), CONVERSATIONS, ["qid", "query", "human_rewrite"], {}, {"column": "human_rewrite"}),
    "pyterrier_disco.rewrite.llm.LLMRewriter": lambda e: (
        e["llm"], CONVERSATIONS, ["qid", "query", "history"], {},
        {"model": e["fake_llm"], "backend": "transformers", "policy": "rewrite", "cache": e["cache"]}),
    "pyterrier_disco.rewrite.t5.T5Rewriter": lambda e: (
        e["t5"], CONVERSATIONS, ["qid", "query", "history"], {}, {"model": "castorini/t5-base-canard"}),
    "pyterrier_disco.rewrite.base.RewriteColumns": lambda e: (
        RewriteColumns({"human": Column("human_rewrite"), "t5": e["t5"]}), CONVERSATIONS,
        ["qid", "query", "history", "human_rewrite"], {"human": Column("human_rewrite"), "t5": e["t5"]}, {}),
}
INDEXERS = {  # class -> (indexer, attributes to check)
    "pyterrier_disco.index.writer.SparseIndexer": lambda e, path: (
        new_index(path).indexer(vocab="v"),
        {"index": Satisfies(lambda v: type(v).__name__ == "SparseIndex"), "vocab": "v"}),
    "pyterrier_disco.index.artifact.SparseIndex": lambda e, path: (new_index(path), {"path": path}),
    "pyterrier_disco.index.pisa._GuardedPisaIndexer": lambda e, path: (
        new_index(path, backend="pisa").indexer(overwrite=True), {"overwrite": True}),
}


def fusion_case(e):
    p1 = e["disco"].query_encoder() >> e["numba"].retriever(num_results=3)
    p2 = e["splade"].query_encoder() >> e["pisa"].retriever(num_results=3)
    return (Fusion(p1, p2, num_results=4), CONVERSATIONS, ["qid", "query", "history"], {"pipelines": [p1, p2]},
            {"num_results": 4, "method": "mean-minmax"})


def test_every_transformer_is_covered():
    assert package_transformers() - ABSTRACT == set(CASES) | set(INDEXERS)


def _same(a, b) -> bool:
    if isinstance(a, pt.Transformer) or isinstance(b, pt.Transformer):
        return repr(a) == repr(b) and type(a) is type(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a is b or a == b


def check_attributes(transformer, expected):
    attributes = {a.name: a.value for a in pt.inspect.transformer_attributes(transformer)}
    parameters = list(inspect.signature(type(transformer).__init__).parameters)[1:]
    assert list(attributes) == [p for p in parameters if not p.startswith("_")]
    assert not [n for n, v in attributes.items() if inspect.ismethod(v)], "an attribute is a bound method"
    for name, value in expected.items():
        assert value.check(attributes[name]) if isinstance(value, Satisfies) else _same(attributes[name], value), name
    clone = pt.inspect.transformer_apply_attributes(transformer)
    assert type(clone) is type(transformer)
    clone_attributes = {a.name: a.value for a in pt.inspect.transformer_attributes(clone)}
    assert all(_same(clone_attributes[n], v) for n, v in attributes.items())
    return clone


@pytest.mark.parametrize("name", sorted(CASES))
def test_transformer_inspection(env, name):
    transformer, frame, required, subtransformers, expected = CASES[name](env)
    inputs = pt.inspect.transformer_inputs(transformer)
    assert sorted(required) in [sorted(c) for c in inputs]
    assert any(set(c) <= set(frame.columns) for c in inputs)
    out = transformer(frame)
    assert len(out) > 0
    columns = list(frame.columns)
    assert sorted(pt.inspect.transformer_outputs(transformer, columns)) == sorted(out.columns)
    assert sorted(transformer(frame.iloc[:0]).columns) == sorted(out.columns)  # empty frames, same columns
    for missing in required:  # a missing column is a validation error naming it, never a bare KeyError
        remaining = [c for c in columns if c != missing]
        if not any(set(c) <= set(remaining) for c in inputs):  # (PISA also takes query text for query_toks)
            with pytest.raises(pt.validate.InputValidationError, match=missing):
                pt.inspect.transformer_outputs(transformer, remaining)
    assert _same(pt.inspect.subtransformers(transformer), subtransformers)
    clone = check_attributes(transformer, expected)
    pd.testing.assert_frame_equal(clone(frame), out)


def test_inspecting_rewriters_loads_no_model(env):
    llm, t5 = env["llm"], env["t5"]
    for rewriter in (llm, t5, RewriteColumns({"t5": t5})):
        pt.inspect.transformer_inputs(rewriter)
        pt.inspect.transformer_outputs(rewriter, list(CONVERSATIONS.columns))
        pt.inspect.transformer_attributes(rewriter)
        pt.inspect.subtransformers(rewriter)
        pt.inspect.transformer_apply_attributes(rewriter)
        rewriter(CONVERSATIONS)  # served from the cache
    assert llm._generator is None and llm._tokenizer is None and t5._seq2seq is None
    assert llm.llm_calls == t5.llm_calls == 0


@pytest.mark.parametrize("name", sorted(INDEXERS))
def test_indexer_inspection(env, name, tmp_path):
    indexer, expected = INDEXERS[name](env, tmp_path / "index")
    assert pt.inspect.indexer_inputs(indexer) == [["docno", "toks"]]
    assert pt.inspect.transformer_type(indexer) == pt.inspect.TransformerType.indexer
    clone = check_attributes(indexer, expected)
    encoded = env["splade"].doc_encoder()(DOCS)
    built = clone.index(encoded.to_dict("records"))
    assert built.built()


@pytest.mark.parametrize("backend", ["numba", "pisa", "fusion"])
def test_rank_cutoff_fuses_into_the_retriever(env, backend):
    encoded = env["disco"].query_encoder()(CONVERSATIONS)
    if backend == "fusion":
        retriever, frame = fusion_case(env)[0], CONVERSATIONS
    else:
        retriever, frame = env[backend].retriever(num_results=3), encoded
    cut = pt.inspect.transformer_apply_attributes(retriever, num_results=2)
    assert type(cut) is type(retriever)
    compiled = (retriever % 2).compile()
    assert type(compiled) is type(retriever)  # no separate RankCutoff stage
    expected = retriever(frame)
    expected = expected[expected["rank"] < 2].reset_index(drop=True)
    for t in (cut, compiled):
        got = t(frame)
        assert (got["rank"] < 2).all()
        pd.testing.assert_frame_equal(got[["qid", "docno", "rank"]], expected[["qid", "docno", "rank"]])
    assert retriever.fuse_rank_cutoff(10) is None
