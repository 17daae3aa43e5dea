"""The sharded configuration of ``scale.py``: N shards of M synthetic documents, each written by a Ray task on a
local cluster with the project's shard writer, against one index over the same documents.

    python benchmarks/scale.py --shards 4 --shard-docs 250000 [--cpus 2]

Reported, so that the cost of each layer shows: indexing throughput of the shards (wall clock of the whole
build and per shard, generation of the synthetic documents kept apart), peak resident memory of each writer
worker (sampled inside the task), the time to checksum a shard, and query latency (top 1000, long real
conversational queries, one query at a time and a batch of 20) of the single index, of the shards searched
in-process one after another, and of one Ray actor per shard; the sharded results are checked identical to
the single index's. Ray's own start-up is reported too.
"""
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import _synthetic
from _stats import machine, summary
from scale import PeakMemory, records
from pyterrier_disco.index import ShardedIndex, SparseIndex
from pyterrier_disco.index.shard_build import BUILD, finished_shard, plan_shards, write_manifest, write_shard
from pyterrier_disco.index.sharded import file_digests

N_QUERIES = 20


def _terms(stats) -> np.ndarray:
    return np.array([f"t{j}" for j in range(len(stats["vocab"]))], dtype=object)


def build_one_shard(out: str, spec: dict) -> dict:
    """Runs in a Ray worker: generate the shard's documents (the same ones ``scale.py`` feeds the single index)
    and write the shard with the project's writer; time and peak memory measured in this process."""
    stats = _synthetic.load_statistics()
    timing = {"generate_s": 0.0}
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        write_shard(out, spec, records(stats, _terms(stats), timing, spec["offset"],
                                       spec["offset"] + spec["num_docs"]), None)
        total_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    file_digests(Path(out) / spec["name"])
    return {"shard": spec["name"], "docs": spec["num_docs"], "pid": os.getpid(),
            "index_s_with_checksums": round(total_s - timing["generate_s"], 1),
            "generate_s": round(timing["generate_s"], 1), "checksum_s_warm": round(time.perf_counter() - t0, 2),
            "peak_rss_bytes": memory.peak, "peak_rss_above_task_start_bytes": memory.peak - memory.baseline}


def _query_frame(stats) -> pd.DataFrame:
    terms = _terms(stats)
    toks = [dict(zip(terms[q_terms], q_w.tolist())) for q_terms, q_w in _synthetic.queries(stats, "long")[:N_QUERIES]]
    return pd.DataFrame({"qid": [str(i) for i in range(len(toks))], "query_toks": toks})


def _latency(retriever, queries: pd.DataFrame) -> dict:
    retriever(queries.iloc[:1])  # warm-up: loads the index (or starts the actors)
    single = []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        retriever(queries.iloc[i:i + 1])
        single.append(time.perf_counter() - t0)
    batch = []
    for _ in range(3):
        t0 = time.perf_counter()
        retriever(queries)
        batch.append((time.perf_counter() - t0) / len(queries))
    return {"one_query_ms": summary(single, 1000, 2), "batch_of_20_ms_per_query": summary(batch, 1000, 2)}


def run(n_shards: int, shard_docs: int, cpus: int) -> dict:
    import ray

    stats = _synthetic.load_statistics()
    _synthetic.generate(stats, 10)  # numba compilation outside the timings
    bench_dir = str(Path(__file__).resolve().parent)
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env={
        "env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [bench_dir, os.environ.get("PYTHONPATH")]))}})
    ray_init_s = time.perf_counter() - t0
    n_docs = n_shards * shard_docs
    report = {"benchmark": "scale-sharded", "machine": machine(), "ray": ray.__version__, "ray_cpus": cpus,
              "ray_init_s": round(ray_init_s, 1), "shards": n_shards, "docs_per_shard": shard_docs, "docs": n_docs}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sharded"
        plan = {"num_docs": n_docs, "vocab": None, "model": None, "source": "synthetic",
                "shards": plan_shards(n_docs, n_shards)}
        (out / BUILD).mkdir(parents=True)
        task = ray.remote(num_cpus=1)(build_one_shard)
        t0 = time.perf_counter()
        per_shard = ray.get([task.remote(str(out), spec) for spec in plan["shards"]])
        write_manifest(out, plan, {s["name"]: finished_shard(out, s, None) for s in plan["shards"]})
        build_s = time.perf_counter() - t0
        index_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        timing = {"generate_s": 0.0}
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            SparseIndex(Path(tmp) / "single").indexer(verbose=False).index(records(stats, _terms(stats), timing, 0,
                                                                                  n_docs))
            single_s = time.perf_counter() - t0 - timing["generate_s"]
        generate_s = sum(r["generate_s"] for r in per_shard)
        report["indexing"] = {
            "sharded_wall_s": round(build_s, 1),
            "sharded_docs_per_s_wall_incl_generation": round(n_docs / build_s),
            "per_shard": per_shard,
            "per_shard_docs_per_s": [round(r["docs"] / r["index_s_with_checksums"]) for r in per_shard],
            "generate_s_all_shards": round(generate_s, 1),
            "single_index_s": round(single_s, 1), "single_docs_per_s": round(n_docs / single_s),
            "single_peak_rss_above_baseline_bytes": memory.peak - memory.baseline,
            "sharded_bytes_on_disk": index_bytes,
        }
        queries = _query_frame(stats)
        single = SparseIndex(Path(tmp) / "single").retriever(1000, threads=1)
        sharded = ShardedIndex(out)
        local = sharded.retriever(1000, threads=1)
        on_ray = sharded.retriever(1000, ray=True, threads=1, num_cpus=cpus / n_shards)
        expected = single(queries)
        identical = expected.equals(local(queries)) and expected.equals(on_ray(queries))
        shard_ms = [_latency(shard.retriever(1000, threads=1), queries)["one_query_ms"]["median"]
                    for shard in sharded.shards()]
        report["query_latency_top1000_long"] = {
            "single_index": _latency(single, queries), "sharded_in_process": _latency(local, queries),
            "sharded_ray_actors": _latency(on_ray, queries), "each_shard_alone_one_query_median_ms": shard_ms,
            "sharded_results_identical_to_single": bool(identical)}
        on_ray.close()
    ray.shutdown()
    return report

