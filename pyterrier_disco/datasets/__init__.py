"""Conversational datasets registered with ir_datasets, and conversation frames.

Official files are looked up in ``$IR_DATASETS_HOME/<folder>/<official file name>`` (the folder is the first
component of the id, e.g. ``ikat``, ``trec-cast``) and downloaded there when missing (set ``DISCO_OFFLINE=1`` to
never try); ``downloads.json`` lists each file's URLs, size and sha256, checked before use. See each module for
the files, :mod:`.topic_passages` for the ``/topic-passages`` corpora and :mod:`.frames` for pooling several
datasets.
"""
from . import cast, ikat, mini, qrecc, topic_passages, topiocqa
from ._files import ChecksumError, DocsUnavailableError, MissingOfficialFileError
from .frames import conversations, dataset_ids, doc_lookup, docs_iter, known_ids, qrels, split_id

_MODULES = (ikat, cast, topiocqa, qrecc, mini)
REGISTERED_IDS = tuple(ds_id for module in _MODULES for ds_id in module.datasets())


def register() -> None:
    """Register the datasets with ir_datasets (idempotent; ids ir_datasets already has are left alone)."""
    import ir_datasets
    existing = set(ir_datasets.registry)
    for module in _MODULES:
        for ds_id, dataset in module.datasets().items():
            if ds_id not in existing:
                ir_datasets.registry.register(ds_id, dataset)
                existing.add(ds_id)


__all__ = ["register", "conversations", "qrels", "doc_lookup", "docs_iter", "known_ids", "dataset_ids", "split_id",
           "MissingOfficialFileError", "DocsUnavailableError", "ChecksumError", "REGISTERED_IDS", "topic_passages"]
