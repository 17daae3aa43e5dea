"""Sparse inverted indexes: the exact numba :class:`SparseIndex` (a ``pt.Artifact``) and a pyterrier-pisa backend.

- :mod:`.artifact`: the on-disk :class:`SparseIndex` and its checks
- :mod:`.writer`: the streaming :class:`SparseIndexer` and :func:`index_from_csr`
- :mod:`.retriever`: :class:`SparseRetriever` (exact top k)
- :mod:`.pisa`: :class:`PisaBackend`, the same interface over pyterrier-pisa
- :mod:`.sharded`: :class:`ShardedIndex` (N shards, one manifest) and its exact merging retriever
- :mod:`.shard_build`: :func:`build_sharded`, in-process or on Ray (``_ray``, imported only then)
- :mod:`.build`: backends by name, opening an index folder, indexing a dataset, the index cache folders
"""
from .artifact import CorruptIndexError, SparseIndex
from .build import (BACKENDS, dataset_docs, dataset_index, index_dataset, index_folder, model_key, new_index,
                    open_index)
from .pisa import PisaBackend
from .retriever import SparseRetriever
from .shard_build import build_sharded
from .sharded import ShardedIndex, ShardedRetriever
from .writer import SparseIndexer, index_from_csr

__all__ = ["SparseIndex", "SparseIndexer", "SparseRetriever", "ShardedIndex", "ShardedRetriever",
           "build_sharded", "PisaBackend", "CorruptIndexError", "BACKENDS",
           "new_index", "open_index", "index_from_csr", "dataset_docs", "index_dataset", "index_folder",
           "model_key", "dataset_index"]
