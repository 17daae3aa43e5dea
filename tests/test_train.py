import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import pyterrier_disco as disco
from pyterrier_disco.datasets import doc_lookup, qrels
from pyterrier_disco.train import build_teacher_run, kld, save_teacher_run
from pyterrier_disco.train.trainer import TrainConfig, Trainer, train

N_TURNS = 24


@pytest.fixture(scope="module")
def setup(ikat_home, ikat_index, splade_model):
    """Real iKAT 2023 train turns, a human-rewrite teacher run over their passages, qrels and doc texts."""
    index, _ = ikat_index
    frame = disco.conversations("ikat/2023/train")
    subset = frame[frame["turn"] > 0].head(N_TURNS).reset_index(drop=True)
    run = build_teacher_run(subset, {"human": "human_rewrite"}, disco.Splade(splade_model), index, k=100,
                            verbose=False)
    return subset, run, qrels("ikat/2023/train"), doc_lookup("ikat/2023/train")


def mean_kld(trainer: Trainer) -> float:
    examples = trainer.examples(0)
    with torch.no_grad():
        q = trainer.student(trainer.query_texts(examples))
        docs = trainer.cache.dense([d for e in examples for d in e.docnos]).view(len(examples), -1, q.shape[1])
        student_scores = torch.einsum("bv,bcv->bc", q, docs)
        teacher = torch.tensor(np.stack([e.teacher_scores for e in examples]))
        return float(kld(student_scores, teacher))


def test_gradients_reach_only_the_query_encoder_and_documents_are_encoded_once(setup, tmp_path, splade_model):
    frame, run, positives, docs = setup
    trainer = Trainer(frame, run, docs, tmp_path / "s", qrels=positives, doc_model=splade_model,
                      config=TrainConfig(batch_size=4, n_negatives=4), verbose=False)
    batch = trainer.batch(0, 0)
    trainer.compute_loss(batch, 0)["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in trainer.doc_model.parameters())
    grads = [p.grad.abs().sum().item() for p in trainer.student.parameters() if p.grad is not None]
    assert grads and sum(grads) > 0
    unique = len({d for e in batch for d in e.docnos})
    assert trainer.cache.encoded == unique
    trainer.compute_loss(batch, 0)
    assert trainer.cache.encoded == unique  # cached: no second encoding


def test_short_training_lowers_kld_and_the_student_reloads(setup, tmp_path, splade_model):
    frame, run, positives, docs = setup
    config = TrainConfig(loss="kld", epochs=3, batch_size=6, n_negatives=6, lr=1e-4, seed=3)
    trainer = Trainer(frame, run, docs, tmp_path / "student", qrels=positives, doc_model=splade_model,
                      config=config, verbose=False)
    before = mean_kld(trainer)
    student = trainer.train()
    after = mean_kld(trainer)
    assert after < before
    log = pd.read_csv(tmp_path / "student" / "train_log.csv")
    assert list(log["step"]) == list(range(1, trainer.plan["total_steps"] + 1)) and log["kld"].notna().all()
    reloaded = disco.DiSCo.from_pretrained(tmp_path / "student")
    a = student.query_encoder()(frame.head(4))["query_toks"]
    b = reloaded.query_encoder()(frame.head(4))["query_toks"]
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and list(x.values()) == pytest.approx(list(y.values()), abs=1e-5)
    assert reloaded.meta["recipe"]["config"]["loss"] == "kld"
    assert not list((tmp_path / "student").glob("checkpoint-*"))


def test_bad_inputs(setup, tmp_path, splade_model):
    frame, run, positives, docs = setup
    cfg = TrainConfig(batch_size=4, n_negatives=4, epochs=1, max_steps=1)
    broken = run.copy()
    broken["score"] = np.nan
    with pytest.raises(FloatingPointError, match="loss is nan"):
        train(frame, broken, docs, tmp_path / "nan", qrels=positives, doc_model=splade_model, config=cfg,
              verbose=False)
    with pytest.raises(ValueError, match="not in the conversations"):
        train(frame.head(3), run, docs, tmp_path / "q", qrels=positives, doc_model=splade_model, config=cfg,
              verbose=False)
    foreign = run.copy()
    foreign.attrs["teacher_run"] = {**run.attrs["teacher_run"], "vocab_fingerprint": "0" * 16}
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        train(frame, foreign, docs, tmp_path / "v", qrels=positives, doc_model=splade_model, config=cfg)
    with pytest.raises(KeyError, match="history"):
        train(frame.drop(columns=["history"]), run, docs, tmp_path / "h", doc_model=splade_model, config=cfg)
    train(frame, run, docs, tmp_path / "done", qrels=positives, doc_model=splade_model, config=cfg, verbose=False)
    with pytest.raises(FileExistsError, match="different training run"):
        train(frame, run, docs, tmp_path / "done", qrels=positives, doc_model=splade_model,
              config=TrainConfig(batch_size=4, n_negatives=4, epochs=1, max_steps=1, lr=1e-3), verbose=False)
    with pytest.raises(FileExistsError, match="already holds"):
        train(frame, run, docs, tmp_path / "done", qrels=positives, doc_model=splade_model, config=cfg,
              verbose=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a DiSCo training folder"):
        train(frame, run, docs, tmp_path / "other", qrels=positives, doc_model=splade_model, config=cfg)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def _train_cmd(run_file, out, *extra):
    return [sys.executable, "-m", "pyterrier_disco.cli", "train", "--dataset", "ikat/2023/train",
            "--teacher-run", str(run_file), "--out", str(out), "--max-steps", "8", "--checkpoint-every", "2",
            "--batch-size", "3", "--negatives", "4", "--epochs", "2", "--seed", "7", *extra]


def test_resume_after_sigkill_gives_the_same_weights(setup, tmp_path):
    _, run, _, _ = setup
    run_file = save_teacher_run(run, tmp_path / "run.parquet")
    env = {**os.environ, "TQDM_DISABLE": "1"}
    subprocess.run(_train_cmd(run_file, tmp_path / "full"), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_train_cmd(run_file, tmp_path / "killed"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((tmp_path / "killed").glob("checkpoint-*[0-9]")) and time.time() < deadline:
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "pt_meta.json").exists()
    done = subprocess.run(_train_cmd(run_file, tmp_path / "killed", "--resume"), env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert full.keys() == resumed.keys()
    for k in full:
        torch.testing.assert_close(full[k], resumed[k], atol=1e-6, rtol=0)
    steps = pd.read_csv(tmp_path / "killed" / "train_log.csv")["step"]
    assert list(steps) == list(range(1, 9))


def test_cli_teacher_run(ikat_home, ikat_index, tmp_path, capsys):
    from pyterrier_disco.cli import main
    from pyterrier_disco.train import load_teacher_run

    index, _ = ikat_index
    out = tmp_path / "run.parquet"
    assert main(["teacher-run", "--dataset", "ikat/2023/train", "--teachers", "human", "--index", str(index.path),
                 "--out", str(out), "--limit", "10", "--k", "50"]) == 0
    run = load_teacher_run(out)
    assert set(run["teacher"]) == {"human"} and run["qid"].nunique() == 10
    assert run.groupby("qid")["rank"].max().max() < 50
    assert (run.groupby("qid")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert main(["teacher-run", "--dataset", "ikat/2023/train", "--teachers", "oracle", "--index", str(index.path),
                 "--out", str(tmp_path / "x.parquet")]) == 2
    assert "unknown teacher 'oracle'" in capsys.readouterr().err
