"""The shipped default student (issue 11 item 6): a small fp16 delta on the embedded SPLADE-tiny, loaded offline."""
import json

import numpy as np
import pytest
import torch

import pyterrier_disco as disco
from pyterrier_disco.default_student import DELTA, FOLDER, META, export_delta, load_default


def test_the_shipped_delta_is_small_and_loads_offline_and_encodes(ikat_home):
    size = sum(f.stat().st_size for f in FOLDER.iterdir())
    assert size < 5 * 1024 * 1024
    meta = json.loads((FOLDER / META).read_text())
    assert meta["recipe"]["config"]["freeze_embeddings"] is True
    assert not any(d.startswith(("topiocqa", "qrecc", "disco-mini")) for d in meta["recipe"]["datasets"])
    student = disco.DiSCo.default()
    frame = disco.conversations("ikat/2023/train").head(6)
    out = student.query_encoder()(frame)
    assert len(out) == 6 and all(len(v) > 0 for v in out["query_toks"])
    # the delta changed the model: the untrained SPLADE-tiny gives other vectors for the same inputs
    texts = student.formatter.format_frame(frame, student.query_model.tokenizer)
    base = disco.SpladeModel(max_length=meta["max_length"])
    with torch.no_grad():
        ours, theirs = student.query_model(texts), base(texts)
    assert not torch.allclose(ours, theirs, atol=1e-3)
    # and only the shipped tensors differ: the word embeddings are SPLADE-tiny's
    name = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(student.query_model.mlm.state_dict()[name], base.mlm.state_dict()[name])


def test_export_and_load_round_trip_a_trained_student(ikat_home, ikat_index, splade_model, tmp_path):
    from pyterrier_disco.datasets import doc_lookup, qrels
    from pyterrier_disco.train import TrainConfig, build_teacher_run, train

    index, _ = ikat_index
    frame = disco.conversations("ikat/2023/train")
    frame = frame[frame["turn"] > 0].head(8).reset_index(drop=True)
    run = build_teacher_run(frame, {"human": "human_rewrite"}, disco.Splade(splade_model), index, k=50,
                            verbose=False)
    config = TrainConfig(batch_size=4, n_negatives=4, max_length=96, lr=1e-3, max_steps=2, freeze_embeddings=True,
                         max_response_tokens=20, utterance_weight=0.5)
    trained = train(frame, run, doc_lookup("ikat/2023/train"), tmp_path / "s", qrels=qrels("ikat/2023/train"),
                    doc_model=splade_model, config=config, verbose=False)
    info = export_delta(tmp_path / "s", tmp_path / "delta")
    n_params = sum(p.numel() for p in trained.query_model.mlm.parameters())
    assert 0 < info["parameters"] < 0.2 * n_params  # the frozen embeddings are not shipped
    assert (tmp_path / "delta" / DELTA).stat().st_size < 2 * info["parameters"] + 100_000  # fp16
    loaded = load_default(tmp_path / "delta")
    assert loaded.formatter.max_response_tokens == 20 and loaded.query_model.max_length == 96
    assert loaded.utterance_weight == trained.utterance_weight == 0.5
    texts = trained.formatter.format_frame(frame, trained.query_model.tokenizer)
    assert loaded.formatter.format_frame(frame, loaded.query_model.tokenizer) == texts
    with torch.no_grad():
        want, got = trained.query_model(texts).numpy(), loaded.query_model(texts).numpy()
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)  # fp16 weights
    assert (got > 0).sum() == pytest.approx((want > 0).sum(), rel=0.05)
    # a folder that holds something else is never replaced; a delta for another base model is refused
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no default-student delta"):
        export_delta(tmp_path / "s", tmp_path / "other")
    meta = json.loads((tmp_path / "delta" / META).read_text())
    (tmp_path / "delta" / META).write_text(json.dumps({**meta, "base_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="sha256 000000000000"):
        load_default(tmp_path / "delta")
