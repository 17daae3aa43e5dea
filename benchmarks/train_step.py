"""One DiSCo training step (KLD + InfoNCE) with cached document vectors vs re-encoding them. Prints JSON.

    python benchmarks/train_step.py [--quick] [--steps 6] [--batch-size 10] [--negatives 16]

Three set-ups train the same student from the same weights on the same batch, steps interleaved:

- ``cached``: the project's trainer; each candidate document is encoded once by the frozen document model;
- ``re_encoding``: the reference design, re-encoding the 1 + n candidates of every example at every step
  (with the project's encoder): the ``targets`` ratio is this one;
- ``reference``: re-encoding *and* the plain (batch x tokens x vocab) SPLADE formula on both sides, i.e. the
  reference code's step, for scale.

Dropout is seeded identically before each step, so the three losses must agree (reported).
"""
import argparse
import json
import tempfile
import time

import torch

import pyterrier_disco as disco
from _stats import machine, summary, target
from pyterrier_disco.index import index_dataset
from pyterrier_disco.train import TrainConfig, Trainer, build_teacher_run
from pyterrier_disco.train.checkpoint import adamw

DATASET = "disco-mini/train"


def make_trainer(frame, run, docs, qrels, out, cfg, doc_model, plain: bool) -> Trainer:
    trainer = Trainer(frame, run, docs, out, config=cfg, qrels=qrels, doc_model=doc_model, verbose=False)
    if plain:
        trainer.student.head = None
        trainer.cache.model = disco.SpladeModel(device="cpu")
        trainer.cache.model.head = None
    return trainer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--negatives", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="3 steps")
    args = ap.parse_args()
    steps = 3 if args.quick else args.steps
    torch.set_num_threads(2)
    splade = disco.Splade(device="cpu")
    frame = disco.conversations(DATASET)
    docs, qrels = disco.datasets.doc_lookup(DATASET), disco.datasets.qrels(DATASET)
    cfg = dict(batch_size=args.batch_size, n_negatives=args.negatives, loss="disco")
    with tempfile.TemporaryDirectory() as tmp:
        index = index_dataset(DATASET, f"{tmp}/index", splade=splade, verbose=False)
        run = build_teacher_run(frame, {"human": "human_rewrite"}, splade, index, k=1000, verbose=False)
        setups = {
            "cached": make_trainer(frame, run, docs, qrels, f"{tmp}/a", TrainConfig(**cfg), splade.doc_model, False),
            "re_encoding": make_trainer(frame, run, docs, qrels, f"{tmp}/b", TrainConfig(**cfg, cache_documents=False),
                                        splade.doc_model, False),
            "reference": make_trainer(frame, run, docs, qrels, f"{tmp}/c", TrainConfig(**cfg, cache_documents=False),
                                      splade.doc_model, True),
        }
        optimizers = {name: adamw(list(t.student.parameters()), 2e-5, 0.0) for name, t in setups.items()}
        batch = setups["cached"].batch(0, 0)
        for trainer in setups.values():
            with torch.no_grad():
                trainer.compute_loss(batch, 0)  # warm-up; fills the cache of the cached set-up
        seconds = {name: [] for name in setups}
        losses = {name: [] for name in setups}
        for step in range(steps):
            names = list(setups) if step % 2 == 0 else list(setups)[::-1]
            for name in names:
                torch.manual_seed(step)
                t0 = time.perf_counter()
                optimizers[name].zero_grad()
                loss = setups[name].compute_loss(batch, step)["loss"]
                loss.backward()
                optimizers[name].step()
                seconds[name].append(time.perf_counter() - t0)
                losses[name].append(loss.item())
    median = {name: summary(s, 1000, 1)["median"] for name, s in seconds.items()}
    speedup = median["re_encoding"] / median["cached"]
    loss_diff = max(abs(a - b) for name in ("re_encoding", "reference")
                    for a, b in zip(losses["cached"], losses[name]))
    print(json.dumps({
        "benchmark": "train_step", "dataset": DATASET, "machine": machine(), "torch_threads": 2,
        "batch_size": args.batch_size, "candidates_per_example": 1 + args.negatives, "loss": "disco (KLD + InfoNCE)",
        "steps": steps, "ms_per_step": {name: summary(s, 1000, 1) for name, s in seconds.items()},
        "losses": losses, "max_loss_difference": loss_diff,
        "speedup_vs_reference_code": round(median["reference"] / median["cached"], 2),
        "targets": [target("training step: cached documents vs re-encoding", speedup, 5.0, extra_ok=loss_diff < 1e-4,
                           detail=f"{median['cached']} vs {median['re_encoding']} ms/step (medians), same loss "
                                  f"within {loss_diff:.1e}; the reference code's step (plain formula, "
                                  f"re-encoding): {median['reference']} ms")],
    }, indent=2))


if __name__ == "__main__":
    main()
