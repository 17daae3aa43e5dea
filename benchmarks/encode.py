"""SPLADE document encoding throughput: the project's encoder against the plain formula. Prints JSON.

    python benchmarks/encode.py [--quick] [--rounds 3] [--batch-size 32] [--threads 2] [--model DIR_OR_ID]

The plain approach materialises the (batch, tokens, vocab) logits, applies log1p(relu), masks and takes the
max over tokens, batching passages in their given order. The project's encoder (``SpladeModel.encode``)
sorts by length and never builds that tensor (see ``pyterrier_disco/_splade_head.py``). Both run on the
same real iKAT passages, alternating round by round; the vectors are compared entry by entry.
"""
import argparse
import json
import time

import numpy as np
import scipy.sparse as sp
import torch

from _corpus import passages_and_queries
from _stats import machine, summary, target
from pyterrier_disco import SpladeModel


def plain_encode(model: SpladeModel, texts, batch_size: int) -> sp.csr_matrix:
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = texts[start:start + batch_size]
            rows.append(sp.csr_matrix(model.plain_forward(model.tokenize(batch), [not t.strip() for t in batch])))
    return sp.vstack(rows).tocsr()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="64 passages, 2 rounds")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    docs, _, source = passages_and_queries()
    texts = [d["text"] for d in docs][:64 if args.quick else None]
    rounds = 2 if args.quick else args.rounds
    model = SpladeModel(args.model, device="cpu")
    systems = {"plain": lambda: plain_encode(model, texts, args.batch_size),
               "project": lambda: model.encode(texts, batch_size=args.batch_size)}
    model.encode(texts[:4])  # warm-up
    plain_encode(model, texts[:4], 4)
    seconds = {name: [] for name in systems}
    vectors = {}
    for r in range(rounds):
        for name in (list(systems) if r % 2 == 0 else list(systems)[::-1]):
            t0 = time.perf_counter()
            vectors[name] = systems[name]()
            seconds[name].append(time.perf_counter() - t0)
    diff = abs(vectors["project"] - vectors["plain"]).max()
    rate = {name: len(texts) / float(np.median(s)) for name, s in seconds.items()}
    speedup = rate["project"] / rate["plain"]
    print(json.dumps({
        "benchmark": "encode", "model": model.name, "corpus": source, "device": "cpu",
        "torch_threads": args.threads, "batch_size": args.batch_size, "machine": machine(),
        "passages": len(texts), "rounds": rounds, "tokens_avg": round(float(np.mean(
            [min(len(model.tokenizer(t)["input_ids"]), model.max_length) for t in texts])), 1),
        "doc_terms_avg": round(float(vectors["project"].getnnz(axis=1).mean()), 1),
        "seconds_per_round": {name: summary(s) for name, s in seconds.items()},
        "passages_per_s": {name: round(v, 2) for name, v in rate.items()},
        "max_abs_diff": float(diff),
        "targets": [target("encoding throughput vs plain SPLADE formula", speedup, 5.0,
                           extra_ok=diff <= 1e-4,
                           detail=f"{rate['project']:.1f} vs {rate['plain']:.1f} passages/s (medians of "
                                  f"{rounds} rounds), max abs diff {diff:.2e} (must be <= 1e-4)")],
    }, indent=2))


if __name__ == "__main__":
    main()
