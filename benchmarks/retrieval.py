"""Index build time/size and query latency of the numba and PISA backends. Prints JSON.

    python benchmarks/retrieval.py [--repeat 20] [--k 1000] [--threads 1 2]

``--repeat`` copies the passages to grow the collection (the vectors are encoded once).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _corpus import passages_and_queries
from pyterrier_disco import SpladeModel, sparse_index


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def latency(retriever, queries: pd.DataFrame, rounds: int = 3) -> dict:
    retriever(queries.iloc[:2])  # warm-up (numba compile / PISA load)
    per_query = []
    for _ in range(rounds):
        for i in range(len(queries)):
            t0 = time.perf_counter()
            retriever(queries.iloc[i:i + 1])
            per_query.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    retriever(queries)
    batch_ms = (time.perf_counter() - t0) * 1000 / len(queries)
    return {"ms_per_query_p50": round(float(np.percentile(per_query, 50)), 3),
            "ms_per_query_p95": round(float(np.percentile(per_query, 95)), 3),
            "ms_per_query_batched": round(batch_ms, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    docs, queries, source = passages_and_queries(1)
    model = SpladeModel()
    doc_vecs = model.to_dicts(model.encode([d["text"] for d in docs]))
    records = [{"docno": f"{d['docno']}#{r}", "toks": v} for r in range(args.repeat) for d, v in zip(docs, doc_vecs)]
    q = pd.DataFrame({"qid": [str(i) for i in range(len(queries))], "query": queries,
                      "query_toks": model.to_dicts(model.encode(queries))})
    report = {"benchmark": "retrieval", "corpus": source, "docs": len(records), "queries": len(q), "k": args.k}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ["numba", "pisa"]:
            index = sparse_index(Path(tmp) / backend, backend=backend, verbose=False)
            t0 = time.perf_counter()
            index.indexer().index(iter(records))
            entry = {"index_build_s": round(time.perf_counter() - t0, 3),
                     "index_bytes": folder_bytes(Path(tmp) / backend)}
            for threads in (args.threads if backend == "numba" else [1]):
                entry[f"threads_{threads}"] = latency(index.retriever(num_results=args.k, threads=threads), q)
            report[backend] = entry
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
