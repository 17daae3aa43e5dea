"""Encoding throughput of the SPLADE encoder. Prints JSON.

    python benchmarks/encode.py [--model DIR_OR_ID] [--batch-size 32] [--threads 2]
"""
import argparse
import json
import platform
import time

import torch

from _corpus import passages_and_queries
from pyterrier_disco import SpladeModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    docs, queries, source = passages_and_queries()
    model = SpladeModel(args.model)
    model.encode([d["text"] for d in docs[:8]])  # warm-up
    t0 = time.perf_counter()
    m = model.encode([d["text"] for d in docs], batch_size=args.batch_size)
    doc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = model.encode(queries, batch_size=args.batch_size)
    q_s = time.perf_counter() - t0
    print(json.dumps({
        "benchmark": "encode", "model": model.name, "corpus": source, "device": str(model.device),
        "torch_threads": args.threads, "batch_size": args.batch_size, "cpu": platform.processor(),
        "passages": len(docs), "passages_per_s": round(len(docs) / doc_s, 2),
        "queries": len(queries), "queries_per_s": round(len(queries) / q_s, 2),
        "doc_terms_avg": round(m.getnnz(axis=1).mean(), 1), "query_terms_avg": round(q.getnnz(axis=1).mean(), 1),
    }, indent=2))


if __name__ == "__main__":
    main()
