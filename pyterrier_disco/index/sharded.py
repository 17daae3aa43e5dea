"""A sharded exact index: N :class:`SparseIndex` shards over contiguous slices of the documents, one manifest.

Layout of a ``sparse_index.sharded`` folder (built by :func:`~pyterrier_disco.index.shard_build.build_sharded`):

- ``pt_meta.json``: the manifest, written last: ``num_docs``, ``vocab`` (the document encoder's vocabulary
  fingerprint), ``model`` and, per shard, its folder ``name``, ``offset`` (the global id of its first
  document), ``num_docs`` and ``files``: every file of the shard folder with its size and SHA-256
- ``shard-00000/``, ``shard-00001/``, ...: ordinary ``sparse_index.numba`` folders

Global document ids are ``offset + local id``; a shard's scorer breaks ties by local id, so merging the shards'
top k by (score descending, shard, rank in shard) gives exactly the ranking of one index over all documents.
"""
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd
import pyterrier as pt

from .._checksums import sha256
from .artifact import ARTIFACT_TYPE, CorruptIndexError, SparseIndex, read_meta
from .retriever import (Hits, SparseRetriever, check_num_results, check_queries, check_terms_found, check_vocab,
                        hits_frame, ranks)

SHARDED_FORMAT = "sharded"


def file_digests(folder) -> dict:
    """``{relative path: {"bytes", "sha256"}}`` of every file under ``folder`` (whatever files it holds)."""
    folder = Path(folder)
    out = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        out[file.relative_to(folder).as_posix()] = {"bytes": file.stat().st_size, "sha256": sha256(file)}
    return out


def check_shard(root, entry: dict, vocab: Optional[str], *, deep: bool = False) -> SparseIndex:
    """The shard ``entry`` of the manifest at ``root``, checked: present, every file of the size the manifest
    records (with ``deep``: of the same SHA-256), built with the manifest's vocabulary and document count.
    Raises :class:`CorruptIndexError` naming the shard."""
    name = entry["name"]
    path = Path(root) / name
    if not path.is_dir():
        raise CorruptIndexError(f"shard {name} of {root} is missing: {path} does not exist")
    for rel, want in entry["files"].items():
        file = path / rel
        if not file.is_file():
            raise CorruptIndexError(f"shard {name} of {root} is incomplete: {file} is missing")
        size = file.stat().st_size
        if size != want["bytes"]:
            raise CorruptIndexError(f"shard {name} of {root} is truncated or altered: {file} has {size} bytes, "
                                    f"the manifest says {want['bytes']}")
    if deep:
        for rel, got in file_digests(path).items():
            if rel in entry["files"] and got["sha256"] != entry["files"][rel]["sha256"]:
                raise CorruptIndexError(f"shard {name} of {root} is corrupt: the checksum of {path / rel} "
                                        "differs from the manifest's")
    shard = SparseIndex(path, verbose=False)
    meta = shard.meta
    if meta.get("vocab") != vocab:
        raise CorruptIndexError(f"shard {name} of {root} was built with another document model: vocabulary "
                                f"{meta.get('vocab')}, the manifest says {vocab}")
    if meta["num_docs"] != entry["num_docs"]:
        raise CorruptIndexError(f"shard {name} of {root} holds {meta['num_docs']} documents, the manifest says "
                                f"{entry['num_docs']}")
    return shard


class ShardedIndex(pt.Artifact):
    """An exact sparse index split into shards, searched one shard after another or by Ray actors.

    >>> index = ShardedIndex("idx")            # or pt.Artifact.load("idx")
    >>> (splade.query_encoder() >> index.retriever(num_results=100))(topics)          # in-process
    >>> (splade.query_encoder() >> index.retriever(100, ray="auto"))(topics)          # one actor per shard
    """

    ARTIFACT_TYPE = ARTIFACT_TYPE
    ARTIFACT_FORMAT = SHARDED_FORMAT

    def __init__(self, path, *, verbose: bool = True):
        super().__init__(path)
        self.verbose = verbose

    def built(self) -> bool:
        return (Path(self.path) / "pt_meta.json").exists()

    @property
    def meta(self) -> dict:
        return read_meta(self.path, SHARDED_FORMAT, "build it with build_sharded() or disco index --shards")

    def shards(self, *, deep: bool = False) -> List[SparseIndex]:
        """Every shard, checked against the manifest (``deep``: their checksums too)."""
        meta = self.meta
        return [check_shard(self.path, entry, meta["vocab"], deep=deep) for entry in meta["shards"]]

    def verify(self) -> None:
        """Recompute every shard file's SHA-256 and compare it with the manifest (reads the whole index)."""
        self.shards(deep=True)

    def retriever(self, num_results: int = 1000, *, ray=None, vocab: Optional[str] = None,
                  threads: Optional[int] = None, num_cpus: Optional[float] = None,
                  actor_options: Optional[Sequence[dict]] = None, verbose: bool = False) -> "ShardedRetriever":
        """Exact top ``num_results`` over all shards (``qid, query_toks`` -> ``qid, docno, score, rank``).

        ``ray=None``: the shards are opened in this process and searched one after another. ``ray="auto"``,
        ``"local"``, ``True`` or an address (``"host:6379"``, ``"ray://host:10001"``): one actor per shard
        (``num_cpus`` each, default one or the cluster's CPUs / shards when fewer) opens its shard from its own
        machine's disk at the same path; ``actor_options[i]`` adds Ray options to shard ``i``'s actor, e.g.
        ``{"resources": {"node:10.0.0.7": 0.01}}`` to place it where that shard lies."""
        return ShardedRetriever(self, num_results, ray=ray, vocab=vocab, threads=threads, num_cpus=num_cpus,
                                actor_options=actor_options, verbose=verbose)

    @property
    def docnos(self) -> np.ndarray:
        return np.concatenate([shard.docnos for shard in self.shards()])

    def __len__(self) -> int:
        return self.meta["num_docs"]

    def __repr__(self):
        return f"ShardedIndex({str(self.path)!r})"


class ShardedRetriever(pt.Transformer):
    """Fans a batch of queries out to every shard and merges their top k exactly."""

    def __init__(self, index: ShardedIndex, num_results: int = 1000, *, ray=None, vocab: Optional[str] = None,
                 threads: Optional[int] = None, num_cpus: Optional[float] = None,
                 actor_options: Optional[Sequence[dict]] = None, verbose: bool = False, _searcher=None):
        self.index = index
        self.num_results = check_num_results(num_results)
        self.ray = ray
        self.vocab = vocab
        self.threads = threads
        self.num_cpus = num_cpus
        self.actor_options = actor_options
        self.verbose = verbose
        self._searcher = _searcher

    def fuse_rank_cutoff(self, k: int) -> Optional["ShardedRetriever"]:
        if k < self.num_results:
            return ShardedRetriever(self.index, k, ray=self.ray, vocab=self.vocab, threads=self.threads,
                                    num_cpus=self.num_cpus, actor_options=self.actor_options,
                                    verbose=self.verbose, _searcher=self._searcher)
        return None

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.query_frame(inp, extra_columns=["query_toks"], context=self)
        meta = self.index.meta
        check_vocab(self.index.path, meta.get("vocab"), self.vocab or inp.attrs.get("vocab"))
        if not len(inp):
            return hits_frame(inp, None)
        check_queries(inp)
        shard_hits = self.searcher().hits(list(inp["qid"]), list(inp["query_toks"]), self.num_results)
        hits = merge_hits(shard_hits, len(inp), self.num_results)
        check_terms_found(inp["query_toks"], hits.terms_found, self.index.path)
        return hits_frame(inp, hits)

    def searcher(self):
        """The shards' searchers (opened on first use, then kept)."""
        if self._searcher is None:
            if self.ray is None or self.ray is False:
                self._searcher = LocalShards(self.index, self.threads)
            else:
                from ._ray import ShardActors

                self._searcher = ShardActors(self.index, self.ray, threads=self.threads, num_cpus=self.num_cpus,
                                             actor_options=self.actor_options)
        return self._searcher

    def close(self) -> None:
        """Release the shard actors (or the in-process shards)."""
        if self._searcher is not None and hasattr(self._searcher, "close"):
            self._searcher.close()
        self._searcher = None

    def __repr__(self):
        where = "in-process" if self.ray is None or self.ray is False else f"ray={self.ray!r}"
        return f"ShardedRetriever({str(self.index.path)!r}, num_results={self.num_results}, {where})"


class LocalShards:
    """Every shard opened in this process, searched one after another."""

    def __init__(self, index: ShardedIndex, threads: Optional[int] = None):
        self.retrievers = [SparseRetriever(shard, threads=threads) for shard in index.shards()]

    def hits(self, qids, query_toks, k: int) -> List[Hits]:
        out = []
        for retriever in self.retrievers:
            retriever.num_results = k
            out.append(retriever.hits(qids, query_toks))
        return out


def merge_hits(shard_hits: Sequence[Hits], n_queries: int, k: int) -> Hits:
    """The exact top ``k`` of each query over shards given in document order, each with its own top ``k``
    ranked by (score descending, local id): ties go to the earlier shard, then to the better shard rank, which is
    the order of global document ids."""
    rows = np.concatenate([np.repeat(np.arange(n_queries), h.counts) for h in shard_hits])
    shard = np.concatenate([np.full(int(h.counts.sum()), i) for i, h in enumerate(shard_hits)])
    rank = np.concatenate([ranks(h.counts) for h in shard_hits])
    scores = np.concatenate([h.scores for h in shard_hits])
    docnos = np.concatenate([np.asarray(h.docnos, object) for h in shard_hits])
    order = np.lexsort((rank, shard, -scores, rows))
    sorted_rows = rows[order]
    position = np.arange(len(order)) - np.searchsorted(sorted_rows, sorted_rows, side="left")
    keep = order[position < k]
    return Hits(np.bincount(rows[keep], minlength=n_queries).astype(np.int64), docnos[keep], scores[keep],
                sum(h.terms_found for h in shard_hits))

