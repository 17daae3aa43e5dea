"""Choosing, opening and building indexes: backends by name, dataset passages, the index cache folders."""
import hashlib
import json
from pathlib import Path
from typing import Iterator

from .artifact import CorruptIndexError, SparseIndex
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


def open_index(path, **kwargs):
    """Open an existing index folder of either backend, by its ``pt_meta.json``."""
    meta_file = Path(path) / "pt_meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"no index at {path}: {meta_file} is missing")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") not in BACKENDS:
        raise CorruptIndexError(f"{path} holds a {meta.get('type')}.{meta.get('format')} artifact, not a "
                                "numba or PISA sparse index")
    return new_index(path, meta["format"], **kwargs)


def dataset_docs(dataset) -> Iterator[dict]:
    """``{"docno", "text"}`` records of an ir_datasets dataset (given by id or object), or of several pooled (a
    list or a comma-separated string of ids: one corpus, docnos ``"<corpus>::<docno>"``, see
    :func:`pyterrier_disco.datasets.docs_iter`)."""
    from ..datasets import docs_iter

    return docs_iter(dataset)


def index_dataset(dataset, out, *, backend: str = "numba", splade=None, batch_size: int = 32,
                  overwrite: bool = False, verbose: bool = True):
    """Encode a dataset's passages with the document encoder and build an index at ``out``."""
    from ..encoders import Splade

    splade = splade if splade is not None else Splade()
    index = new_index(out, backend=backend, verbose=verbose)
    encoder = splade.doc_encoder(batch_size=batch_size, verbose=False)
    indexer = index.indexer(vocab=splade.doc_model.vocab_fingerprint, overwrite=overwrite)
    (encoder >> indexer).index(dataset_docs(dataset))
    return index


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
    if not index.built():
        index_dataset(dataset, index_dir, splade=splade, verbose=verbose)
    return index


def _model_slug(splade) -> str:
    return hashlib.sha1(str(splade.doc_model.name_or_path).encode()).hexdigest()[:8]
