import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from pyterrier_disco import Splade, SpladeModel, embedded_model_path


def reference_splade(texts, max_length=256):
    """Independent SPLADE computation: max over tokens of log(1 + relu(logits)) * mask."""
    path = embedded_model_path()
    tok = AutoTokenizer.from_pretrained(str(path))
    mlm = AutoModelForMaskedLM.from_pretrained(str(path)).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        logits = mlm(**enc).logits
    return (torch.log1p(torch.relu(logits)) * enc["attention_mask"].unsqueeze(-1)).max(dim=1).values.numpy()


TEXTS = ["What is the capital of France?", "How do I cook pasta al dente without it sticking together",
         "SPLADE is a learned sparse retrieval model."]


def test_encoding_matches_independent_computation(splade_model):
    ours = splade_model.encode(TEXTS, batch_size=2).toarray()
    ref = reference_splade(TEXTS)
    assert ours.shape == (3, 30522)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert (ours > 0).sum(axis=1).min() > 5


def test_blank_texts_give_empty_vectors_and_long_texts_are_truncated(splade_model):
    head = "alpha beta gamma delta " * 80  # > 256 word pieces
    m = splade_model.encode(["", "   ", head + "zebra giraffe", head + "volcano eruption"])
    assert m[0].nnz == 0 and m[1].nnz == 0
    np.testing.assert_allclose(m[2].toarray(), m[3].toarray())  # the differing tails were truncated away
    assert m[2].nnz > 0


def test_non_string_input_is_a_clear_error(splade_model):
    enc = Splade(splade_model).query_encoder()
    with pytest.raises(TypeError, match="row 1"):
        enc(pd.DataFrame({"qid": ["1", "2"], "query": ["fine", None]}))


def test_query_and_doc_encoders_follow_pyterrier_conventions(splade_model):
    splade = Splade(splade_model)
    q = splade.query_encoder()(pd.DataFrame({"qid": ["1"], "query": [TEXTS[0]]}))
    expected = splade_model.to_dicts(splade_model.encode([TEXTS[0]]))[0]
    assert q["query_toks"][0] == pytest.approx(expected)
    assert max(q["query_toks"][0], key=q["query_toks"][0].get) in {"capital", "france", "paris"}
    d = splade.doc_encoder()(pd.DataFrame({"docno": ["d1"], "text": [TEXTS[1]]}))
    assert set(d.columns) == {"docno", "text", "toks"}
    empty = splade.query_encoder()(pd.DataFrame(columns=["qid", "query"]))
    assert list(empty.columns) == ["qid", "query", "query_toks"] and len(empty) == 0
    with pytest.raises(pt.validate.InputValidationError):
        splade.doc_encoder()(pd.DataFrame({"docno": ["d1"], "body": ["x"]}))
    assert pt.inspect.transformer_outputs(splade.query_encoder(), ["qid", "query"]) == ["qid", "query", "query_toks"]
    assert pt.inspect.transformer_outputs(splade.doc_encoder(), ["docno", "text"]) == ["docno", "text", "toks"]


def test_scorer_reranks_by_dot_product(splade_model):
    res = pd.DataFrame({"qid": ["1"] * 3, "query": [TEXTS[0]] * 3, "docno": ["a", "b", "c"],
                        "text": ["Paris is the capital of France.", "Pasta should be cooked in salted water.",
                                 "France borders Spain and Germany."], "score": [0.0] * 3, "rank": [0, 1, 2]})
    out = Splade(splade_model).scorer()(res)
    q = splade_model.encode([TEXTS[0]]).toarray()[0]
    d = splade_model.encode(list(res["text"])).toarray()
    brute = dict(zip(res["docno"], d @ q))
    assert list(out["docno"]) == sorted(brute, key=lambda k: -brute[k])
    assert out["score"].tolist() == pytest.approx([brute[k] for k in out["docno"]], rel=1e-5)
    assert list(out["rank"]) == [0, 1, 2]
    scorer = Splade(splade_model).scorer()
    empty = scorer(res.iloc[:0])
    assert len(empty) == 0 and {"qid", "docno", "score", "rank"} <= set(empty.columns)
    assert {"score", "rank"} <= set(pt.inspect.transformer_outputs(scorer, list(res.columns)))
    with pytest.raises(pt.validate.InputValidationError):
        scorer(res.drop(columns=["text"]))
    with pytest.raises(pt.validate.InputValidationError):
        Splade(splade_model).query_encoder()(pd.DataFrame({"qid": ["1"], "text": ["no query column"]}))


def test_separate_query_and_document_models(splade_model):
    other = SpladeModel(device="cpu")
    with torch.no_grad():
        other.mlm.get_output_embeddings().bias += torch.linspace(0, 1, len(other.vocab))
    splade = Splade(query_model=other, doc_model=splade_model)
    frame = pd.DataFrame({"qid": ["1"], "query": [TEXTS[2]], "docno": ["d"], "text": [TEXTS[2]]})
    q = splade.query_encoder()(frame)["query_toks"][0]
    d = splade.doc_encoder()(frame)["toks"][0]
    assert q == pytest.approx(other.to_dicts(other.encode([TEXTS[2]]))[0])
    assert d == pytest.approx(splade_model.to_dicts(splade_model.encode([TEXTS[2]]))[0])
    assert q != pytest.approx(d)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        SpladeModel(tmp_path)


def test_conversation_encoder_reads_the_history_newest_first(splade_model):
    enc = Splade(splade_model).conversation_encoder()
    history = [{"role": "user", "text": "Tell me about the Panama Canal."},
               {"role": "system", "text": "It links the Atlantic and Pacific oceans through Panama."}]
    frame = pd.DataFrame({"qid": ["1"], "query": ["When did it open?"], "history": [history]})
    toks = enc(frame)["query_toks"][0]
    text = "When did it open? [SEP] It links the Atlantic and Pacific oceans through Panama. [SEP] " \
           "Tell me about the Panama Canal."
    assert toks == pytest.approx(splade_model.to_dicts(splade_model.encode([text]))[0])
    assert "panama" in toks
    assert pt.inspect.transformer_outputs(enc, ["qid", "query", "history"]) == ["qid", "query", "history", "query_toks"]
    with pytest.raises(pt.validate.InputValidationError):
        enc(pd.DataFrame({"qid": ["1"], "query": ["no history column"]}))
