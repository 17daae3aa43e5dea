"""Sparse inverted indexes: an exact numba index (``SparseIndex``) and a pyterrier-pisa backend.

On-disk layout of a ``SparseIndex`` folder (all written to a temporary folder, renamed when complete):

- ``pt_meta.json``: artifact type/format, counts, the encoder vocabulary fingerprint (if known)
- ``lexicon.json``: the terms, in term-id order
- ``offsets.npy`` (int64, n_terms + 1), ``doc_ids.npy``, ``weights.npy`` (float32): the postings of term
  ``t`` are positions ``offsets[t]:offsets[t+1]``, in ascending doc order, with their ``weights``
- ``blocks.npy`` (int64, n_terms x (n_blocks + 1)): ``blocks[t, b]`` is the first posting of term ``t`` with a
  doc id in block ``b`` (blocks of ``_scoring.BLOCK_DOCS`` = 65536 documents) or later
- ``doc_ids.npy`` holds uint16 ids *within the block*: the doc id of posting ``p`` in block ``b`` is
  ``b * 65536 + doc_ids[p]``. Exhaustive scoring is bound by the bytes it streams per posting, and this
  cuts them from 8 to 6 (``benchmarks/retrieval.py``); :meth:`SparseIndex.postings` gives global ids.
  Indexes written with int32 global ids (before the block table existed) still load, converted in memory.
- ``block_max.npy`` (n_terms x n_blocks, the weights' dtype): the largest weight of each term in each block,
  the bounds of exact pruning (:mod:`._pruning`). Indexes written before it existed get it computed in memory
  when they load (one pass over the weights; rebuild the index to store it).
- ``docnos.npy``: docno of each internal doc id
- ``.pyterrier_disco.json``: the marker saying pyterrier_disco wrote the folder (only such a folder is replaced)

``pt_meta.json`` also records the size and sha256 of every file (checked on open: sizes, and the hashes of
the small files; :meth:`SparseIndex.verify` hashes them all and checks the values), and, when built by
:func:`~pyterrier_disco.index.index_dataset`, the ``dataset`` and the ``doc_model`` it was built from.

- quantised indexes (``quantized=True``; ``pt_meta.json`` says ``"quantized": true``): ``weights.npy`` holds
  uint8 codes and ``scales.npy`` (float32, n_terms) each term's step: a weight is ``code * scales[t]``, with
  codes ``max(1, round(w / step))`` and ``step = max weight of the term / 255``. Half the bytes per posting;
  scores are approximate (``benchmarks/retrieval.py`` measures the overlap with the exact top k).
"""
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Tuple

import numpy as np
import pyterrier as pt

from .._checksums import check_files
from .._errors import DiscoError
from .._folders import is_ours
from .._utils import read_json
from ._scoring import BLOCK_DOCS, BLOCK_SHIFT, local_postings

if TYPE_CHECKING:
    from .retriever import SparseRetriever
    from .writer import SparseIndexer

ARTIFACT_TYPE, ARTIFACT_FORMAT = "sparse_index", "numba"
_ARRAYS = {"offsets": np.int64, "doc_ids": (np.uint16, np.int32), "weights": (np.float32, np.uint8)}
INDEX_FILES = ("pt_meta.json", "lexicon.json", "docnos.npy", "blocks.npy", "block_max.npy", "scales.npy", *_ARRAYS)
_COUNTS = ("num_docs", "num_terms", "num_postings")


class CorruptIndexError(DiscoError, RuntimeError):
    """An index file is missing, truncated or inconsistent with ``pt_meta.json``."""


def is_index_folder(path) -> bool:
    """Whether ``path`` is a numba index folder this project wrote (and holds nothing else), so that
    ``overwrite=True`` may replace it; indexes written before the marker existed are recognised by their files."""
    if is_ours(path, ARTIFACT_TYPE):
        return True
    try:
        meta = read_json(Path(path) / "pt_meta.json")
    except (OSError, ValueError):
        return False
    names = {p.name for p in Path(path).iterdir()}
    return (meta.get("type"), meta.get("format")) == (ARTIFACT_TYPE, ARTIFACT_FORMAT) and \
        names <= {f + ".npy" if f in _ARRAYS else f for f in INDEX_FILES}


class SparseIndex(pt.Artifact, pt.Indexer):
    """An exact learned-sparse inverted index searched with numba.

    >>> index = SparseIndex("idx")
    >>> (splade.doc_encoder() >> index.indexer()).index(docs)
    >>> (splade.query_encoder() >> index.retriever(num_results=100))(topics)
    """

    ARTIFACT_TYPE = ARTIFACT_TYPE
    ARTIFACT_FORMAT = ARTIFACT_FORMAT

    def __init__(self, path, *, quantized: Optional[bool] = None, threads: Optional[int] = None,
                 verbose: bool = True):
        """``quantized``: build with 8-bit weights (``True``) or exact float32 ones (``False``, the default for a
        new index); ``None`` opens an existing index as it was built. A value that contradicts the index on
        disk is refused when it loads."""
        super().__init__(path)
        self.quantized = quantized
        self.threads = threads
        self.verbose = verbose
        self._data = None

    def built(self) -> bool:
        return (Path(self.path) / "pt_meta.json").exists()

    @property
    def meta(self) -> dict:
        meta = read_meta(self.path, ARTIFACT_FORMAT, "build it with .indexer()")
        bad = [k for k in _COUNTS if not isinstance(meta.get(k), int) or meta[k] < 0]
        if bad:
            raise CorruptIndexError(f"{Path(self.path) / 'pt_meta.json'} lacks valid {', '.join(bad)}: the index "
                                    "metadata is incomplete or damaged; rebuild the index")
        return meta

    def indexer(self, *, vocab: Optional[str] = None, overwrite: bool = False,
                verbose: Optional[bool] = None, info: Optional[dict] = None) -> "SparseIndexer":
        """An indexer consuming ``docno`` and ``toks``. ``vocab``: the document encoder's vocabulary fingerprint;
        ``info``: provenance to record (``dataset``, ``doc_model``). ``overwrite`` replaces only an index this
        project wrote."""
        from .writer import SparseIndexer

        return SparseIndexer(self, vocab=vocab, overwrite=overwrite, quantized=bool(self.quantized),
                             verbose=self.verbose if verbose is None else verbose, info=info)

    def index_inputs(self):
        return [["docno", "toks"]]

    def index(self, it: Iterable[dict]):
        return self.indexer().index(it)

    def retriever(self, num_results: int = 1000, *, vocab: Optional[str] = None, threads: Optional[int] = None,
                  prune: Optional[bool] = None, verbose: bool = False) -> "SparseRetriever":
        """Exact top-``num_results`` by dot product (``qid, query_toks`` -> ``qid, docno, score, rank``).

        ``threads=None``: every core for a batch of at least two queries per core (each thread takes its own
        queries); for fewer queries, one thread per ``_scoring.DOCS_PER_THREAD`` documents, up to the cores (a
        second thread on one query only paid off from about a million documents in ``benchmarks/retrieval.py``).
        ``prune``: exact dynamic pruning (:mod:`._pruning`) for every query (``True``), none (``False``) or the
        queries where it is expected to pay (``None``); the results are the same.
        """
        from .retriever import SparseRetriever

        return SparseRetriever(self, num_results=num_results, vocab=vocab, threads=threads or self.threads,
                               prune=prune, verbose=verbose)

    # -- loading ---------------------------------------------------------------------------------
    def _load(self):
        if self._data is not None:
            return self._data
        meta = self.meta
        path = Path(self.path)
        if "files" in meta:  # sizes, and the hashes of the small files (indexes before checksums: no check)
            check_files(path, meta["files"], CorruptIndexError)
        arrays = {}
        for name, dtype in _ARRAYS.items():
            arrays[name] = _load_array(path / f"{name}.npy", dtype)
        docnos = _load_array(path / "docnos.npy", None)
        try:
            lexicon = read_json(path / "lexicon.json", "index lexicon", list)
        except FileNotFoundError as e:
            raise CorruptIndexError(f"index file missing: {path / 'lexicon.json'}") from e
        except ValueError as e:
            raise CorruptIndexError(str(e)) from e
        expected = {"offsets": meta["num_terms"] + 1, "doc_ids": meta["num_postings"],
                    "weights": meta["num_postings"]}
        for name, n in expected.items():
            if arrays[name].shape != (n,):
                raise CorruptIndexError(f"{path / (name + '.npy')} has shape {arrays[name].shape}, "
                                        f"pt_meta.json says ({n},)")
        if len(lexicon) != meta["num_terms"] or docnos.shape != (meta["num_docs"],):
            raise CorruptIndexError(f"{path}: lexicon.json or docnos.npy disagrees with pt_meta.json")
        if arrays["offsets"][-1] != meta["num_postings"]:
            raise CorruptIndexError(f"{path / 'offsets.npy'} does not end at the number of postings")
        if arrays["doc_ids"].dtype == np.int32:  # written before the block table: global ids
            arrays["blocks"], arrays["doc_ids"] = local_postings(arrays["offsets"], arrays["doc_ids"], meta["num_docs"])
        else:
            arrays["blocks"] = _load_blocks(path, meta, arrays)
        _load_quantisation(path, meta, arrays, self.quantized)
        arrays["block_max"] = _load_block_max(path, arrays)
        self._data = (arrays, docnos, {t: i for i, t in enumerate(lexicon)})
        return self._data

    def verify(self) -> dict:
        """Check the whole index: every file against its recorded sha256, then the values (finite positive
        weights, doc ids inside the collection, one entry per term). Raises :class:`CorruptIndexError` naming
        the problem; returns what was checked."""
        meta = self.meta
        hashed = check_files(self.path, meta["files"], CorruptIndexError, full=True) if "files" in meta else 0
        self._data = None
        arrays, docnos, lexicon = self._load()
        path = Path(self.path)
        weights = arrays["weights"]
        for start in range(0, len(weights), 1 << 24):
            part = weights[start:start + (1 << 24)]
            if not (np.isfinite(part).all() and (part > 0).all()):
                raise CorruptIndexError(f"{path / 'weights.npy'} holds weights that are not finite and positive")
        starts, ends = arrays["blocks"][:, -2], arrays["blocks"][:, -1]  # each term's postings in the last block
        lengths = ends - starts
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        in_last = arrays["doc_ids"][positions]
        if len(in_last) and int(in_last.max()) >= len(docnos) - ((len(docnos) - 1) >> BLOCK_SHIFT << BLOCK_SHIFT):
            raise CorruptIndexError(f"{path / 'doc_ids.npy'} holds doc ids beyond the {len(docnos)} documents")
        if len(lexicon) != meta["num_terms"]:
            raise CorruptIndexError(f"{path / 'lexicon.json'} lists a term twice")
        return {"path": str(path), "files_hashed": hashed, "checksums": "files" in meta,
                "num_docs": len(docnos), "num_terms": len(lexicon), "num_postings": len(weights)}

    def postings(self, term: str) -> Tuple[np.ndarray, np.ndarray]:
        """(global doc ids, weights) of one term's posting list; empty arrays for a term not in the index."""
        arrays, _, lexicon = self._load()
        if term not in lexicon:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        row = arrays["blocks"][lexicon[term]]
        ids = [(b << BLOCK_SHIFT) + arrays["doc_ids"][row[b]:row[b + 1]].astype(np.int64) for b in range(len(row) - 1)]
        weights = np.asarray(arrays["weights"][row[0]:row[-1]])
        if "scales" in arrays:  # quantised: the codes times the term's step
            weights = (weights * arrays["scales"][lexicon[term]]).astype(np.float32)
        return np.concatenate(ids), weights

    def term_probabilities(self) -> Dict[str, float]:
        """p_j(d): the fraction of documents in which each indexed term is active (for FLOPs, Eq. 7)."""
        arrays, docnos, lexicon = self._load()
        df = np.diff(arrays["offsets"])
        return {t: df[i] / len(docnos) for t, i in lexicon.items()}

    @property
    def docnos(self) -> np.ndarray:
        return self._load()[1]

    def __len__(self) -> int:
        return self.meta["num_docs"]

    def __repr__(self):
        return f"SparseIndex({str(self.path)!r})"


def read_meta(path, artifact_format: Optional[str], hint: str) -> dict:
    """The ``pt_meta.json`` of a ``sparse_index.<artifact_format>`` folder (any format if ``None``), checked to
    be one."""
    meta_file = Path(path) / "pt_meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"no index at {path}: {meta_file} is missing ({hint})")
    try:
        meta = read_json(meta_file, "index metadata")
    except ValueError as e:
        raise CorruptIndexError(str(e)) from e
    if meta.get("type") != ARTIFACT_TYPE or artifact_format not in (None, meta.get("format")):
        wanted = "sparse index" if artifact_format is None else f"{ARTIFACT_TYPE}.{artifact_format} index"
        raise CorruptIndexError(f"{path} holds a {meta.get('type')}.{meta.get('format')} artifact, not a {wanted}")
    return meta


def _load_array(file: Path, dtype) -> np.ndarray:
    if not file.exists():
        raise CorruptIndexError(f"index file missing: {file}")
    try:
        arr = np.load(file, mmap_mode="r" if dtype is not None else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptIndexError(f"index file truncated or corrupt: {file} ({e})") from e
    allowed = dtype if isinstance(dtype, tuple) else (dtype,)
    if dtype is not None and arr.dtype not in allowed:
        expected = " or ".join(np.dtype(d).name for d in allowed)
        raise CorruptIndexError(f"{file} has dtype {arr.dtype}, expected {expected}")
    return arr


def _load_quantisation(path: Path, meta: dict, arrays: dict, asked: Optional[bool]) -> None:
    """Check the weights' dtype against ``pt_meta.json`` (and the ``quantized`` the index was opened with); load
    the scales of a quantised index."""
    quantized = bool(meta.get("quantized", False))
    if asked is not None and asked != quantized:
        raise ValueError(f"{path} holds {'a quantised' if quantized else 'an exact'} index, but it was opened with "
                         f"quantized={asked}")
    expected = np.uint8 if quantized else np.float32
    if arrays["weights"].dtype != expected:
        raise CorruptIndexError(f"{path / 'weights.npy'} has dtype {arrays['weights'].dtype}, pt_meta.json says "
                                f"{np.dtype(expected).name}")
    if quantized:
        arrays["scales"] = _load_array(path / "scales.npy", np.float32)
        if arrays["scales"].shape != (meta["num_terms"],):
            raise CorruptIndexError(f"{path / 'scales.npy'} does not have one scale per term")


def _load_block_max(path: Path, arrays: dict) -> np.ndarray:
    """Per-(term, block) maximum weights; computed (and not written: the folder may be read-only) for indexes
    built before they were stored."""
    shape = (len(arrays["offsets"]) - 1, arrays["blocks"].shape[1] - 1)
    file = path / "block_max.npy"
    if not file.exists():
        import warnings

        from ._pruning import block_maxima

        warnings.warn(f"{path} has no block_max.npy (built by an older version): computing the block maxima for "
                      "pruning in memory; rebuild the index to store them", stacklevel=3)
        return block_maxima(np.ascontiguousarray(arrays["blocks"]), np.ascontiguousarray(arrays["weights"]))
    block_max = _load_array(file, arrays["weights"].dtype.type)
    if block_max.shape != shape:
        raise CorruptIndexError(f"{file} has shape {block_max.shape}, expected {shape}")
    return block_max


def _load_blocks(path: Path, meta: dict, arrays: dict) -> np.ndarray:
    """The block table, checked against the offsets: the scorer trusts it."""
    file = path / "blocks.npy"
    if meta.get("block_docs") != BLOCK_DOCS:
        raise CorruptIndexError(f"{path} has blocks of {meta.get('block_docs')} documents; this version reads "
                                f"{BLOCK_DOCS}: rebuild the index")
    blocks = _load_array(file, np.int64)
    n_blocks = max(1, -(-meta["num_docs"] // BLOCK_DOCS))
    offsets = arrays["offsets"]
    if (blocks.shape != (meta["num_terms"], n_blocks + 1) or not np.array_equal(blocks[:, 0], offsets[:-1])
            or not np.array_equal(blocks[:, -1], offsets[1:]) or (np.diff(blocks, axis=1) < 0).any()):
        raise CorruptIndexError(f"{file} does not match offsets.npy and pt_meta.json")
    return blocks
