"""Building a :class:`~pyterrier_disco.index.sharded.ShardedIndex`: contiguous slices of the documents, one
:class:`SparseIndex` per slice, in this process or on Ray; resumable.

While building, ``<out>/.build/`` holds ``plan.json`` (the slices) and one ``<shard>.json`` per finished shard
(its files' sizes and checksums), written only after the shard's folder was renamed into place: a worker that
dies leaves no record, so the shard counts as unfinished and is rebuilt on the next run, while finished shards
are kept. ``pt_meta.json`` is written last, from the records; then ``.build/`` goes.
"""
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

import pandas as pd
import pyterrier as pt

from .._utils import read_json, write_json
from .artifact import ARTIFACT_TYPE, SparseIndex
from .sharded import SHARDED_FORMAT, ShardedIndex, file_digests

BUILD = ".build"
FAILPOINT = "DISCO_SHARD_FAILPOINT"  # "<shard>:<n>": the process indexing <shard> exits after n documents (fault tests)


class DocSource:
    """Documents by global position: a frame or list of ``{"docno", "text"}`` (or already encoded
    ``{"docno", "toks"}``) records, or an ir_datasets dataset (id or object)."""

    def __init__(self, docs):
        self.dataset_id, self.frame = None, None
        if isinstance(docs, str) or hasattr(docs, "docs_iter"):
            import ir_datasets

            import pyterrier_disco.datasets  # noqa: F401  (registers the project's datasets, also in workers)

            dataset = ir_datasets.load(docs) if isinstance(docs, str) else docs
            if not dataset.has_docs():
                raise ValueError(f"dataset {docs!r} has no documents")
            self.dataset_id = docs if isinstance(docs, str) else dataset.dataset_id()
            self.n = dataset.docs_count()
            if self.n is None:
                raise ValueError(f"dataset {self.dataset_id!r} does not know its number of documents; pass its "
                                 "documents as a frame")
            self.kind = "text"
        else:
            self.frame = docs if isinstance(docs, pd.DataFrame) else pd.DataFrame(list(docs))
            self.kind = "toks" if "toks" in self.frame.columns else "text"
            missing = {"docno", self.kind} - set(self.frame.columns)
            if missing:
                raise KeyError(f"documents need 'docno' and 'text' (or 'toks') columns; missing {sorted(missing)}")
            self.n = len(self.frame)

    def records(self, start: int, stop: int) -> Iterator[dict]:
        """The documents ``start <= i < stop`` as ``{"docno", "text" | "toks"}`` records."""
        if self.frame is not None:
            part = self.frame.iloc[start:stop]
            for docno, value in zip(part["docno"], part[self.kind]):
                yield {"docno": docno, self.kind: value}
            return
        import ir_datasets

        import pyterrier_disco.datasets  # noqa: F401

        docs = ir_datasets.load(self.dataset_id).docs_iter()
        try:
            docs = docs[start:stop]
        except TypeError:  # an iterator that cannot slice: skip to the start
            docs = itertools.islice(docs, start, stop)
        for doc in docs:
            yield {"docno": doc.doc_id, "text": doc.default_text()}

    def describe(self) -> str:
        return f"ir_datasets:{self.dataset_id}" if self.dataset_id else f"{self.n} {self.kind} records"


def plan_shards(n_docs: int, num_shards: int) -> List[dict]:
    """``num_shards`` contiguous slices of ``n_docs`` documents, sizes differing by at most one."""
    if num_shards < 1:
        raise ValueError(f"the number of shards must be >= 1, got {num_shards}")
    if n_docs < num_shards:
        raise ValueError(f"cannot split {n_docs} documents into {num_shards} shards")
    bounds = [i * n_docs // num_shards for i in range(num_shards + 1)]
    return [{"name": f"shard-{i:05d}", "offset": bounds[i], "num_docs": bounds[i + 1] - bounds[i]}
            for i in range(num_shards)]


def build_sharded(docs, out, *, shards: int, splade=None, vocab: Optional[str] = None, ray=None,
                  batch_size: int = 32, num_gpus: Optional[float] = None, workers: Optional[int] = None,
                  overwrite: bool = False, verbose: bool = True) -> ShardedIndex:
    """Index ``docs`` into ``shards`` shards at ``out``: text is encoded by ``splade``'s document model (default
    the embedded SPLADE-tiny); already encoded ``toks`` are indexed as they are (``vocab``: their fingerprint).

    ``ray=None`` builds the shards one after another in this process. ``ray=True`` / ``"local"`` / ``"auto"`` / an
    address: Ray Data encodes the passages on ``workers`` encoder actors (one model load each, ``num_gpus`` GPUs
    each: by default one when the cluster has GPUs, else none; batches of ``batch_size``; ``workers`` by default
    one per GPU, or per CPU), then one Ray task per shard writes it. Rerunning after a failure keeps the
    finished shards and rebuilds the others; ``overwrite`` starts again."""
    if ray is not None:  # an unreachable cluster is refused before anything is written
        from ._ray import connect

        connect(ray)
    source = DocSource(docs)
    model = None
    if source.kind == "text":
        from ..encoders import Splade

        splade = splade if splade is not None else Splade()
        model = splade.doc_model
        vocab = model.vocab_fingerprint
    out = Path(out)
    plan = {"num_docs": source.n, "vocab": vocab, "model": model.name if model else None,
            "source": source.describe(), "shards": plan_shards(source.n, shards)}
    _start(out, plan, overwrite)
    records = {spec["name"]: rec for spec in plan["shards"] if (rec := finished_shard(out, spec, vocab))}
    pending = [spec for spec in plan["shards"] if spec["name"] not in records]
    if verbose and records:
        print(f"{out}: {len(records)} of {shards} shards already built, building {len(pending)}")
    if pending and ray is None:
        for spec in pt.tqdm(pending, desc="shards", unit="shard", disable=not verbose):
            items = source.records(spec["offset"], spec["offset"] + spec["num_docs"])
            if model is not None:
                items = encode_records(model, items, batch_size)
            records[spec["name"]] = write_shard(out, spec, items, vocab)
    elif pending:
        from ._ray import build_shards

        records.update(build_shards(source, out, pending, ray, model=model, vocab=vocab, batch_size=batch_size,
                                    num_gpus=num_gpus, workers=workers, verbose=verbose))
    write_manifest(out, plan, records)
    return ShardedIndex(out, verbose=verbose)


def write_manifest(out: Path, plan: dict, records: dict) -> None:
    """``pt_meta.json`` from the plan and every shard's record (``{name: record}``); the build folder goes."""
    meta = {"type": "sparse_index", "format": SHARDED_FORMAT, "package_hint": "pyterrier-disco",
            **{k: plan[k] for k in ("num_docs", "vocab", "model", "source")}, "num_shards": len(plan["shards"]),
            "shards": [records[spec["name"]] for spec in plan["shards"]]}
    write_json(Path(out) / "pt_meta.json", meta)
    shutil.rmtree(Path(out) / BUILD, ignore_errors=True)


def is_sharded_folder(path) -> bool:
    """Whether ``path`` holds a sharded index (finished, or a build under way) and nothing else, so that it
    may be replaced or resumed: never a folder that merely has a ``pt_meta.json``."""
    path = Path(path)
    manifest = path / "pt_meta.json"
    if manifest.exists():
        try:
            meta = read_json(manifest)
        except (OSError, ValueError):
            return False
        if (meta.get("type"), meta.get("format")) != (ARTIFACT_TYPE, SHARDED_FORMAT):
            return False
    elif not (path / BUILD / "plan.json").exists():
        return False
    # shards, and their writers' locks and temporary folders (.shard-N.lock, .shard-N.*.tmp)
    return all(p.name in ("pt_meta.json", BUILD) or p.name.startswith(("shard-", ".shard-")) for p in path.iterdir())


def _start(out: Path, plan: dict, overwrite: bool) -> None:
    """Check ``out`` (a finished index is kept unless ``overwrite``; an unfinished build must have the same
    plan), clear what a killed run left half-written, record the plan."""
    build, manifest = out / BUILD, out / "pt_meta.json"
    ours = out.exists() and is_sharded_folder(out)
    if out.exists() and any(out.iterdir()) and not ours:
        raise FileExistsError(f"{out} exists and is not a sharded index: choose an empty or new folder")
    if overwrite and ours:
        shutil.rmtree(out)
    elif manifest.exists():
        raise FileExistsError(f"{out} already holds a sharded index; remove it or pass overwrite=True")
    elif ours:
        before = json.loads((build / "plan.json").read_text())
        if before != plan:
            changed = sorted(k for k in plan if before.get(k) != plan[k])
            raise ValueError(f"{out} holds an unfinished build of other documents or settings ({', '.join(changed)} "
                             "differ): pass overwrite=True to start again")
        for leftover in out.glob(".*.tmp"):  # temporary folders of shards whose writer died
            shutil.rmtree(leftover, ignore_errors=True)
    build.mkdir(parents=True, exist_ok=True)
    write_json(build / "plan.json", plan)


def finished_shard(out: Path, spec: dict, vocab: Optional[str]) -> Optional[dict]:
    """The record of a shard finished by an earlier run, or None when it has to be (re)built."""
    file = out / BUILD / f"{spec['name']}.json"
    if not file.exists():
        return None
    record = json.loads(file.read_text())
    folder = out / spec["name"]
    same = all(record.get(k) == v for k, v in spec.items()) and record.get("vocab") == vocab
    intact = all((folder / rel).is_file() and (folder / rel).stat().st_size == f["bytes"]
                 for rel, f in record.get("files", {}).items())
    return {k: v for k, v in record.items() if k != "vocab"} if same and intact else None


def encode_records(model, records: Iterable[dict], batch_size: int, chunk: int = 1024) -> Iterator[dict]:
    """``{"docno", "text"}`` records encoded into ``{"docno", "toks"}`` by a SPLADE document model."""
    records = iter(records)
    while batch := list(itertools.islice(records, chunk)):
        vectors = model.to_dicts(model.encode([r["text"] for r in batch], batch_size=batch_size))
        yield from ({"docno": r["docno"], "toks": toks} for r, toks in zip(batch, vectors))


def write_shard(out, spec: dict, records: Iterable[dict], vocab: Optional[str]) -> dict:
    """Index one shard's records into ``out/<name>`` (a temporary folder renamed when complete), then record it
    as finished with its files' sizes and checksums."""
    out = Path(out)
    path = out / spec["name"]
    shard = SparseIndex(path, verbose=False)
    shard.indexer(vocab=vocab, overwrite=True, verbose=False).index(_failpoint(records, spec["name"]))
    if len(shard) != spec["num_docs"]:
        raise RuntimeError(f"shard {spec['name']} received {len(shard)} documents, its slice has {spec['num_docs']}")
    record = {**spec, "files": file_digests(path)}
    write_json(out / BUILD / f"{spec['name']}.json", {**record, "vocab": vocab})
    return record


def _failpoint(records: Iterable[dict], name: str) -> Iterator[dict]:
    target, _, after = os.environ.get(FAILPOINT, "").partition(":")
    for i, record in enumerate(records):
        if target == name and i == int(after):
            os._exit(70)  # a worker killed mid-shard: no cleanup runs, as with a real crash
        yield record
