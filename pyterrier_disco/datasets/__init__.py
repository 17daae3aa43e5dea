"""Conversational datasets registered with ir_datasets, and conversation frames.

Official files are looked up in ``$IR_DATASETS_HOME/<first component of the id>/<official file name>`` and
downloaded there when missing (set ``DISCO_OFFLINE=1`` to never try); see each module for the file names.
"""
from . import cast, ikat, mini, qrecc, topiocqa
from ._files import DocsUnavailableError, MissingOfficialFileError
from .frames import conversations, doc_lookup, known_ids, qrels

_MODULES = (ikat, cast, topiocqa, qrecc, mini)
REGISTERED_IDS = ("ikat/2023/train", "ikat/2023/test", "trec-cast/v3/2022", "topiocqa/train", "topiocqa/dev",
                  "qrecc/train", "qrecc/test", "disco-mini/train", "disco-mini/test")


def register() -> None:
    """Register the datasets with ir_datasets (idempotent; ids ir_datasets already has are left alone)."""
    import ir_datasets
    existing = set(ir_datasets.registry)
    for module in _MODULES:
        for ds_id, dataset in module.datasets().items():
            if ds_id not in existing:
                ir_datasets.registry.register(ds_id, dataset)
                existing.add(ds_id)


__all__ = ["register", "conversations", "qrels", "doc_lookup", "known_ids", "MissingOfficialFileError", "DocsUnavailableError",
           "REGISTERED_IDS"]
