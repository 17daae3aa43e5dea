"""Training step time with cached document vectors vs re-encoding the candidates at every step
(what the reference code does). Same batch, same machine, one run. Prints JSON.

    python benchmarks/train_step.py [--batch-size 10] [--negatives 16] [--steps 5]
"""
import argparse
import json
import tempfile
import time

import torch

import pyterrier_disco as disco
from pyterrier_disco.index import index_dataset
from pyterrier_disco.train import TrainConfig, Trainer, build_teacher_run

DATASET = "disco-mini/train"


def step_seconds(trainer: Trainer, steps: int) -> list:
    optimizer = torch.optim.AdamW(trainer.student.parameters(), lr=2e-5)
    batch = trainer.batch(0, 0)
    trainer.compute_loss(batch, 0)  # warm-up (and, when caching, the one-off encoding of these documents)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        trainer.compute_loss(batch, 0)["loss"].backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--negatives", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    splade = disco.Splade()
    frame = disco.conversations(DATASET)
    with tempfile.TemporaryDirectory() as tmp:
        index = index_dataset(DATASET, f"{tmp}/index", splade=splade, verbose=False)
        run = build_teacher_run(frame, {"human": "human_rewrite"}, splade, index, k=1000, verbose=False)
        report = {"benchmark": "train_step", "dataset": DATASET, "batch_size": args.batch_size,
                  "negatives": args.negatives, "torch_threads": torch.get_num_threads()}
        for cached in (True, False):
            cfg = TrainConfig(batch_size=args.batch_size, n_negatives=args.negatives, cache_documents=cached)
            trainer = Trainer(frame, run, disco.datasets.doc_lookup(DATASET), f"{tmp}/s{cached}", config=cfg,
                              qrels=disco.datasets.qrels(DATASET), doc_model=splade.doc_model, verbose=False)
            times = step_seconds(trainer, args.steps)
            report["cached" if cached else "re_encoding"] = {
                "ms_per_step_median": round(1000 * sorted(times)[len(times) // 2], 1),
                "ms_per_step_min": round(1000 * min(times), 1)}
        report["speedup"] = round(report["re_encoding"]["ms_per_step_median"] / report["cached"]["ms_per_step_median"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
