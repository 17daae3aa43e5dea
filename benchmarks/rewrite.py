"""LLM rewriting latency per turn by batch size (no cache). Prints JSON.

    python benchmarks/rewrite.py [--quick] [--turns 30] [--batch-sizes 1 8] [--model DIR_OR_ID]

It backs the rewriter's CPU default (``batch_size=1``); it has no target of its own (``targets`` is empty).

Turns are real iKAT 2023 train turns from ../shared/data (else disco-mini/test).
"""
import argparse
import json
import statistics
import time

import pyterrier_disco as disco
from _corpus import ikat_home
from pyterrier_disco.rewrite import LLMRewriter


def turns(n: int):
    if ikat_home():
        return disco.conversations("ikat/2023/train").head(n), "ikat/2023/train"
    return disco.conversations("disco-mini/test").head(n), "disco-mini/test"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--model", default=None)
    ap.add_argument("--quick", action="store_true", help="8 turns")
    args = ap.parse_args()
    frame, source = turns(8 if args.quick else args.turns)
    report = {"benchmark": "rewrite", "turns": len(frame), "source": source, "targets": []}
    for bs in args.batch_sizes:
        llm = LLMRewriter(args.model, cache=False, batch_size=bs)
        llm(frame.head(1))  # load (and convert the GGUF once)
        per_call = []
        generate = llm.generate

        def timed(batch, generate=generate, per_call=per_call):
            t0 = time.perf_counter()
            out = generate(batch)
            per_call.append((time.perf_counter() - t0) / len(batch))
            return out
        llm.generate = timed
        t0 = time.perf_counter()
        llm(frame)
        report[f"batch_{bs}"] = {"s_per_turn": round((time.perf_counter() - t0) / len(frame), 3),
                                 "median_s_per_turn": round(statistics.median(per_call), 3),
                                 "fallbacks": llm.fallbacks, "model": llm.model_id}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
