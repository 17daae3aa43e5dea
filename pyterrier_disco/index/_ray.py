"""Ray plumbing, imported only when a Ray option is used: connecting to a cluster, encoding passages with Ray
Data into per-shard parts, one writer task per shard, one search actor per shard.

Encoded passages travel from the encoder actors to the shard writers as ``.npz`` parts under
``<out>/.build/parts/<shard>/<first global id>-<count>.npz`` (numpy arrays, no pickle); on a multi-machine
cluster ``out`` must therefore be on storage that every node sees.
"""
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pandas as pd

from .._errors import ClusterError, MissingExtraError
from .retriever import Hits, SparseRetriever
from .shard_build import BUILD, FAILPOINT, DocSource, write_shard
from .sharded import ShardedIndex, check_shard

READ_CHUNK = 4096  # passages read from an ir_datasets dataset per Ray Data row


def require_ray():
    try:
        import ray
    except ImportError as e:
        raise MissingExtraError("the Ray options need Ray: pip install 'pyterrier-disco[ray]'") from e
    return ray


def connect(address):
    """The ``ray`` module, connected: ``True``: to the running session or Ray's default (``$RAY_ADDRESS`` or a
    new local cluster), ``"local"``: a new local cluster, ``"auto"``: the cluster running on this machine,
    ``"host:port"`` / ``"ray://host:port"``: that cluster. One that cannot be reached is a RuntimeError in one
    line, before Ray's own (long) connection attempts."""
    ray = require_ray()
    explicit = address not in (True, "local", "auto")
    if explicit:
        host, _, port = str(address).rpartition("://")[2].rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise ClusterError(f"cannot reach the Ray cluster at {address}: {e}") from None
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if explicit and not str(address).startswith("ray://") and _endpoint(address) != _endpoint(current):
            raise ClusterError(f"this process is already connected to the Ray cluster at {current}, not {address}: "
                               "call ray.shutdown() first")
        return ray
    try:
        ray.init(address=None if address is True else address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {first}") from None
    return ray


def _endpoint(address: str):
    host, _, port = str(address).rpartition(":")
    return socket.gethostbyname(host), port


def _get(ray, refs):
    """``ray.get`` with a task's own exception re-raised as itself (its message, not Ray's traceback dump)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        raise e.cause from None


# -- building ----------------------------------------------------------------------------------------------
def build_shards(source: DocSource, out: Path, pending: List[dict], address, *, model, vocab, batch_size: int,
                 num_gpus: Optional[float], workers: Optional[int], verbose: bool) -> Dict[str, dict]:
    """Build the ``pending`` shards on Ray; returns their records. Shards whose writer failed are named in one
    RuntimeError after the others finished (and were recorded)."""
    ray = connect(address)
    from ray.data import ActorPoolStrategy, DataContext

    DataContext.get_current().enable_progress_bars = verbose
    write = ray.remote(num_cpus=1, max_retries=1)(_write_shard_task)
    if os.environ.get(FAILPOINT):  # the fault tests' kill switch travels to the writers
        write = write.options(runtime_env={"env_vars": {FAILPOINT: os.environ[FAILPOINT]}})
    if source.kind == "text":
        parts = out / BUILD / "parts"
        for spec in pending:
            shutil.rmtree(parts / spec["name"], ignore_errors=True)
        (out / BUILD / "terms.json").write_text(json.dumps(model.vocab))
        resources = ray.cluster_resources()
        if num_gpus is None:  # GPU actors when the cluster has GPUs
            num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        workers = workers or max(1, int(resources.get("GPU", 0) // num_gpus if num_gpus else
                                        resources.get("CPU", 1)))
        encoded = _passages(ray, source, pending, max(1, min(2 * workers, sum(s["num_docs"] for s in pending)
                                                           // batch_size))).map_batches(
            PartEncoder, batch_size=batch_size, batch_format="pandas", compute=ActorPoolStrategy(size=workers),
            num_gpus=num_gpus or None, fn_constructor_kwargs={
                "model": model.source, "device": "cuda" if num_gpus else "cpu", "parts": str(parts),
                "shards": pending, "batch_size": batch_size})
        encoded.materialize()
        refs = {spec["name"]: write.remote(str(out), spec, vocab, str(parts / spec["name"])) for spec in pending}
    else:
        refs = {spec["name"]: write.remote(str(out), spec, vocab, None,
                                           list(source.records(spec["offset"], spec["offset"] + spec["num_docs"])))
                for spec in pending}
    records, failed = {}, {}
    for name, ref in refs.items():
        try:
            records[name] = _get(ray, ref)
        except Exception as e:  # a dead worker (RayError) or the writer's own error: reported after the others
            failed[name] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if failed:
        first = next(iter(failed.values()))
        raise ClusterError(f"building shard(s) {', '.join(failed)} of {out} failed ({first}); the "
                           f"{len(records)} other shard(s) of this run are kept: rerun to build the rest")
    return records


def _write_shard_task(out: str, spec: dict, vocab, parts: Optional[str], records: Optional[list] = None) -> dict:
    if parts is not None:
        terms = np.asarray(json.loads((Path(out) / BUILD / "terms.json").read_text()), dtype=object)
        records = part_records(Path(parts), spec, terms)
    record = write_shard(out, spec, records, vocab)
    if parts is not None:
        shutil.rmtree(parts, ignore_errors=True)
    return record


def _passages(ray, source: DocSource, pending: List[dict], blocks: int):
    """A Ray Dataset of the pending shards' passages: ``gid`` (global position), ``docno``, ``text``."""
    if source.frame is not None:
        frame = pd.concat([source.frame.iloc[s["offset"]:s["offset"] + s["num_docs"]][["docno", "text"]]
                           .assign(gid=np.arange(s["offset"], s["offset"] + s["num_docs"])) for s in pending])
        frame = frame.reset_index(drop=True)
        # split here: Ray's own split (np.array_split) turns a pandas 3 frame into bare arrays
        bounds = np.linspace(0, len(frame), min(blocks, len(frame)) + 1).astype(int)
        return ray.data.from_pandas([frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a])
    chunks = [{"start": a, "stop": min(a + READ_CHUNK, s["offset"] + s["num_docs"])} for s in pending
              for a in range(s["offset"], s["offset"] + s["num_docs"], READ_CHUNK)]
    return ray.data.from_items(chunks).map_batches(_read_chunks, batch_size=1, batch_format="pandas",
                                                   fn_kwargs={"dataset_id": source.dataset_id})


def _read_chunks(batch: pd.DataFrame, dataset_id: str) -> pd.DataFrame:
    source = DocSource(dataset_id)
    frames = [pd.DataFrame(list(source.records(a, b))).assign(gid=np.arange(a, b))
              for a, b in zip(batch["start"], batch["stop"])]
    return pd.concat(frames, ignore_index=True)


class PartEncoder:
    """A Ray Data actor: loads the SPLADE document model once, then encodes batches of passages and writes
    each batch's run of consecutive global ids within one shard as a part of that shard."""

    def __init__(self, model, device: str, parts: str, shards: List[dict], batch_size: int):
        from ..encoders import SpladeModel

        self.model = SpladeModel(model, device=device)
        self.parts = Path(parts)
        self.shards = shards
        self.starts = np.asarray([s["offset"] for s in shards])
        self.batch_size = batch_size

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.sort_values("gid").reset_index(drop=True)
        gids = batch["gid"].to_numpy()
        matrix = self.model.encode(list(batch["text"]), batch_size=self.batch_size).tocsr()
        shard = np.searchsorted(self.starts, gids, side="right") - 1
        cuts = np.flatnonzero((np.diff(gids) != 1) | (np.diff(shard) != 0)) + 1
        written = []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(gids)]):
            name = self.shards[shard[lo]]["name"]
            rows = matrix[lo:hi]
            folder = self.parts / name
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{gids[lo]:012d}-{hi - lo}.tmp"
            with open(tmp, "wb") as f:
                np.savez(f, docnos=np.asarray(batch["docno"][lo:hi], dtype=str), indptr=rows.indptr.astype(np.int64),
                         ids=rows.indices.astype(np.int32), weights=rows.data.astype(np.float32))
            tmp.replace(folder / f"{gids[lo]:012d}-{hi - lo}.npz")
            written.append({"shard": name, "start": int(gids[lo]), "count": int(hi - lo)})
        return pd.DataFrame(written)


def part_records(folder: Path, spec: dict, terms: np.ndarray) -> Iterator[dict]:
    """The encoded passages of one shard, in order, from its parts (every global id exactly once)."""
    parts = {}
    for file in folder.glob("*.npz"):
        start, count = map(int, file.stem.split("-"))
        if count > parts.get(start, (0, None))[0]:
            parts[start] = (count, file)
    position, end = spec["offset"], spec["offset"] + spec["num_docs"]
    while position < end:
        if position not in parts:
            raise ClusterError(f"shard {spec['name']}: the encoded passages from global id {position} are missing")
        count, file = parts[position]
        with np.load(file, allow_pickle=False) as part:
            docnos, indptr, ids, weights = part["docnos"], part["indptr"], part["ids"], part["weights"]
        for i, docno in enumerate(docnos):
            lo, hi = indptr[i], indptr[i + 1]
            yield {"docno": str(docno), "toks": dict(zip(terms[ids[lo:hi]], weights[lo:hi].tolist()))}
        position += count


# -- searching ---------------------------------------------------------------------------------------------
class ShardSearcher:
    """A Ray actor holding one shard, memory-mapped from the disk of the machine it runs on."""

    def __init__(self, root: str, entry: dict, vocab: Optional[str], threads: Optional[int]):
        self.args = (root, entry, vocab)
        self.threads = threads
        self.retriever = None

    def open(self) -> int:
        shard = check_shard(*self.args)
        shard._load()
        self.retriever = SparseRetriever(shard, threads=self.threads)
        return len(shard)

    def hits(self, qids, query_toks, k: int) -> Hits:
        self.retriever.num_results = k
        return self.retriever.hits(qids, query_toks)


class ShardActors:
    """One :class:`ShardSearcher` actor per shard; a batch of queries goes to all of them at once."""

    def __init__(self, index: ShardedIndex, address, *, threads: Optional[int] = None,
                 num_cpus: Optional[float] = None, actor_options: Optional[Sequence[dict]] = None):
        self.ray = connect(address)
        meta = index.meta
        shards = meta["shards"]
        if actor_options is not None and len(actor_options) != len(shards):
            raise ValueError(f"actor_options has {len(actor_options)} entries for {len(shards)} shards")
        if num_cpus is None:  # all actors must fit at once, or the search would wait forever
            num_cpus = min(1.0, self.ray.cluster_resources().get("CPU", 1.0) / len(shards))
        actor = self.ray.remote(ShardSearcher)
        self.actors = [actor.options(num_cpus=num_cpus, **(actor_options[i] if actor_options else {}))
                       .remote(str(Path(index.path).resolve()), entry, meta["vocab"], threads)
                       for i, entry in enumerate(shards)]
        try:
            _get(self.ray, [a.open.remote() for a in self.actors])
        except BaseException:
            self.close()
            raise

    def hits(self, qids, query_toks, k: int) -> List[Hits]:
        qids, query_toks = self.ray.put(qids), self.ray.put(query_toks)
        return _get(self.ray, [a.hits.remote(qids, query_toks, k) for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
