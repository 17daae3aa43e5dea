"""The training data of one dataset or several pooled: conversations, usable positives, document texts.

A teacher run retrieves from one index; for a pooled index its docnos name their corpus
(``"<corpus>::<docno>"``, see :mod:`pyterrier_disco.datasets.frames`). A dataset's qrels are usable only when
they point into a corpus of that index: a dataset whose corpus is not indexed (CAsT 2019 and 2020: their
collection is not available here) trains on the teacher's top document instead (see
:func:`~pyterrier_disco.train.sampling.build_examples`).
"""
from dataclasses import dataclass
from typing import Callable, List, Optional

import pandas as pd

from ..datasets import conversations, dataset_ids, doc_lookup, qrels, split_id
from ..datasets.frames import SEP, _load, corpus_name


@dataclass
class TrainingData:
    """What :func:`~pyterrier_disco.train.train` needs, with where it came from."""
    conversations: pd.DataFrame
    qrels: Optional[pd.DataFrame]       # None: no dataset has usable qrels (teacher-top positives throughout)
    docs: Callable[[List[str]], List[str]]
    datasets: List[str]                 # the conversation datasets
    doc_datasets: List[str]             # the datasets whose documents the teacher run retrieved
    teacher_top: List[str]              # datasets without usable qrels: positives are the teacher's top documents

    def provenance(self) -> dict:
        return {"dataset": ",".join(self.datasets), "datasets": self.datasets, "doc_datasets": self.doc_datasets,
                "teacher_top_datasets": self.teacher_top}


def limit_turns(frame: pd.DataFrame, limit: Optional[int]) -> pd.DataFrame:
    """The first ``limit`` turns of each dataset of a (pooled) conversation frame."""
    if not limit:
        return frame
    if "dataset" not in frame.columns:
        return frame.head(limit)
    return frame.groupby("dataset", sort=False, dropna=False).head(limit).reset_index(drop=True)


def _run_corpora(run: pd.DataFrame, pooled: bool) -> Optional[set]:
    if not pooled:
        return None
    docnos = pd.unique(run["docno"].astype(str))
    bare = [d for d in docnos if SEP not in d]
    if bare:
        raise ValueError(f"the teacher run's docnos are not namespaced (e.g. {bare[0]!r}) but the documents come "
                         "from several datasets: was the run retrieved from the index of one dataset? Give that "
                         "dataset as the documents (--docs)")
    return {split_id(d)[0] for d in docnos}


def training_data(dataset, teacher_run: pd.DataFrame, docs=None, limit: Optional[int] = None) -> TrainingData:
    """Conversations, positives and document lookup for training on ``dataset`` (an id, a list of ids or a
    comma-separated string) with ``teacher_run``.

    ``docs``: the dataset(s) whose documents the run's index holds (what ``disco index`` was given; default:
    ``dataset``). Qrels are taken from the datasets whose corpus the run retrieved from; the others are listed
    in ``teacher_top``. ``limit``: the first N turns of each dataset. Unknown ids, a run retrieved from a corpus
    that ``docs`` does not provide, or qids of the run outside the conversations are errors.
    """
    ids = dataset_ids(dataset)
    doc_ids = dataset_ids(docs, any_collection=True) if docs is not None else ids
    frame = limit_turns(conversations(ids), limit)
    pooled_docs = len(doc_ids) > 1
    corpus_of = {i: corpus_name(i, _load(i)) for i in dict.fromkeys(ids + doc_ids)}
    retrieved = _run_corpora(teacher_run, pooled_docs)
    if retrieved is None:
        used_docs = doc_ids
    else:
        provided = {corpus_of[i] for i in doc_ids}
        unknown = sorted(retrieved - provided)
        if unknown:
            raise ValueError(f"the teacher run retrieved documents of {', '.join(unknown)}, which the document "
                             f"datasets ({', '.join(doc_ids)}) do not hold; give the datasets that were indexed")
        used_docs = [i for i in doc_ids if corpus_of[i] in retrieved]
    lookup = doc_lookup(used_docs, namespace=pooled_docs)
    sample = list(pd.unique(teacher_run["docno"].astype(str))[:3])
    try:
        lookup(sample)
    except KeyError:
        raise ValueError(f"the teacher run's documents (e.g. {sample[0]!r}) are not in {', '.join(used_docs)}: "
                         "give the datasets whose documents were indexed (--docs)") from None
    indexed = {corpus_of[i] for i in used_docs}
    judged = [i for i in ids if corpus_of[i] in indexed and _load(i).has_qrels()]
    frames = []
    for i in judged:
        q = qrels(i, namespace=True)
        if len(ids) == 1:
            q["qid"] = q["qid"].str.slice(len(i + SEP))
        if not pooled_docs:
            q["docno"] = q["docno"].str.slice(len(corpus_of[i] + SEP))
        frames.append(q)
    positives = pd.concat(frames, ignore_index=True) if frames else None
    return TrainingData(frame, positives, lookup, ids, used_docs, [i for i in ids if i not in judged])
