"""Choosing, opening and building indexes: backends by name, dataset passages, the index cache folders."""
import hashlib
from pathlib import Path
from typing import Iterator, Optional

from .._folders import output_lock

from .artifact import CorruptIndexError, SparseIndex, read_meta
from .pisa import PisaBackend


BACKENDS = ("numba", "pisa")


def new_index(path, backend: str = "numba", **kwargs):
    """An index of the chosen backend at ``path``, to build or search: ``'numba'`` (:class:`SparseIndex`, exact)
    or ``'pisa'`` (:class:`PisaBackend`, quantised)."""
    if backend == "numba":
        return SparseIndex(path, **kwargs)
    if backend == "pisa":
        return PisaBackend(path, **kwargs)
    raise ValueError(f"unknown index backend {backend!r}: choose {' or '.join(map(repr, BACKENDS))}")


# Artifacts served behind the project's own index interface, by "type.format". pyterrier-pisa registers
# ``sparse_index.pisa`` as its PisaIndex, whose retriever prints to stdout, whose indexer kills the process on
# all-empty documents and which has no ``vocab``/``overwrite`` knobs: PisaBackend adds those over it.
WRAPPERS = {"sparse_index.pisa": PisaBackend}


def open_index(path, **kwargs):
    """Open an existing index folder, whatever its backend, by its ``pt_meta.json``: ``pt.Artifact.load`` opens
    any registered ``sparse_index`` artifact (``numba``: :class:`SparseIndex`; other packages may register more),
    except those in :data:`WRAPPERS` (PISA: :class:`PisaBackend`). ``kwargs`` go to the index's constructor."""
    import pyterrier as pt

    meta = read_meta(path, None, "build it with disco index")
    kind = f"{meta.get('type')}.{meta.get('format')}"
    if kind in WRAPPERS:
        return WRAPPERS[kind](path, **kwargs)
    try:
        index = pt.Artifact.load(str(path), **kwargs)
    except ValueError as e:  # no package registers this format
        raise CorruptIndexError(f"cannot open the {kind} index at {path}: {e}") from e
    if isinstance(index, SparseIndex):
        index.meta  # its checks, before any work
    return index


def dataset_docs(dataset) -> Iterator[dict]:
    """``{"docno", "text"}`` records of an ir_datasets dataset (given by id or object), or of several pooled (a
    list or a comma-separated string of ids: one corpus, docnos ``"<corpus>::<docno>"``, see
    :func:`pyterrier_disco.datasets.docs_iter`)."""
    from ..datasets import docs_iter

    return docs_iter(dataset)


def index_dataset(dataset, out, *, backend: str = "numba", splade=None, batch_size: int = 32,
                  overwrite: bool = False, verbose: bool = True, shards: Optional[int] = None, ray=None,
                  num_gpus: Optional[float] = None):
    """Encode a dataset's passages with the document encoder and build an index at ``out``; with ``shards``
    (or ``ray``) a sharded numba index (:func:`~pyterrier_disco.index.shard_build.build_sharded`)."""
    from ..encoders import Splade

    splade = splade if splade is not None else Splade()
    if shards is not None or ray is not None:
        if backend != "numba":
            raise ValueError(f"sharded indexes use the numba backend, not {backend!r}")
        from .shard_build import build_sharded

        return build_sharded(dataset, out, shards=shards or 1, splade=splade, ray=ray, batch_size=batch_size,
                             num_gpus=num_gpus, overwrite=overwrite, verbose=verbose)
    index = new_index(out, backend=backend, verbose=verbose)
    encoder = splade.doc_encoder(batch_size=batch_size, verbose=False)
    info = {"dataset": dataset if isinstance(dataset, str) else None, **doc_model_info(splade)}
    indexer = index.indexer(vocab=splade.doc_model.vocab_fingerprint, overwrite=overwrite, info=info)
    (encoder >> indexer).index(dataset_docs(dataset))
    return index


def doc_model_info(splade) -> dict:
    """How an index records its document model: its source (``None``: the embedded SPLADE-tiny) and name."""
    source = splade.doc_model.source
    if source is not None and Path(source).is_dir():
        source = str(Path(source).resolve())
    return {"doc_model": source, "doc_model_name": splade.doc_model.name}


def check_index_source(index, dataset: str, splade) -> None:
    """Refuse an index built from another dataset or with another document model than ``splade``'s, as
    recorded at indexing (indexes that recorded nothing pass; the vocabulary is checked at retrieval)."""
    recorded = index.meta if isinstance(index, SparseIndex) else getattr(index, "info", {})
    expected = {"dataset": dataset, **doc_model_info(splade)}
    for key, what in (("dataset", "dataset"), ("doc_model", "document model")):
        if key in recorded and recorded[key] != expected[key]:
            name = recorded.get("doc_model_name") if key == "doc_model" else recorded[key]
            wanted = expected["doc_model_name"] if key == "doc_model" else expected[key]
            raise ValueError(f"{index.path} was built from the {what} {name!r}, not {wanted!r}: choose the "
                             "index of this one (or leave --index out to use the cache)")
    vocab = recorded.get("vocab")
    if vocab and vocab != splade.doc_model.vocab_fingerprint:
        raise ValueError(f"{index.path} was built with vocabulary {vocab}, but the document model "
                         f"{splade.doc_model.name!r} has {splade.doc_model.vocab_fingerprint}")


def index_folder(dataset: str, splade, root=None) -> Path:
    """Where the index of ``dataset``'s passages encoded by ``splade``'s document model lives under ``root``
    (default: the user cache folder): the folder name holds the dataset, the vocabulary fingerprint and a
    hash of the model's name, so that another document model gets its own index."""
    from .._utils import cache_dir

    root = cache_dir("indexes") if root is None else Path(root)
    name = ",".join(dataset) if isinstance(dataset, (list, tuple)) else dataset
    if "," in name:  # a pool: a short, stable name
        name = f"pool-{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return root / f"{name.replace('/', '_')}.{model_key(splade)}"


def model_key(splade) -> str:
    """A short key of ``splade``'s document model (vocabulary fingerprint and a hash of its name), for cache
    file names."""
    return f"{splade.doc_model.vocab_fingerprint}.{_model_slug(splade)}"


def dataset_index(dataset: str, splade, index_dir=None, *, verbose: bool = True):
    """The numba index of ``dataset``'s passages at ``index_dir`` (default: :func:`index_folder` in the user
    cache folder), built with ``splade``'s document encoder when missing."""
    if index_dir is None:
        index_dir = index_folder(dataset, splade)
    index = SparseIndex(index_dir, verbose=verbose)
    with output_lock(index_dir, wait=True):  # a concurrent build of the same index: wait for it, then reuse it
        if not index.built():
            index_dataset(dataset, index_dir, splade=splade, verbose=verbose)
    check_index_source(index, dataset, splade)
    return index


def _model_slug(splade) -> str:
    return hashlib.sha1(str(splade.doc_model.name_or_path).encode()).hexdigest()[:8]
