"""Topic passages as a corpus: the ``<id>/topic-passages`` variants.

Where the official collection cannot be had (the CAsT corpora, ClueWeb22), the passages shipped in the topic
files themselves form a small, real, judged corpus: the CAsT 2021 canonical response passages, the CAsT 2022
and iKAT responses and the iKAT 2023 provenance passages. In a ``<id>/topic-passages`` variant

- the documents are those passages (docnos: the official passage id where there is one,
  ``<doc_id>-<passage_id>`` for CAsT 2021 and ``<doc_id>:<passage_id>`` for iKAT provenance, and
  ``<qid>:response`` for a turn's response); a docno given two texts by the topic file keeps the first;
- each turn's own passages are its positives (qrels label 1);
- leakage: a turn's history holds only earlier turns. A positive whose text already stands in the turn's
  history (an earlier turn had the same canonical passage or response) is not counted, and turns left without
  a positive are not queries of the variant (their utterances and responses still stand in later turns'
  histories). The frame's ``response`` column is the turn's own answer, i.e. its positive: never feed it to a
  query encoder.

A user with the full collection indexes it and uses the plain id instead.
"""
from typing import Callable, Iterable, List, NamedTuple, Optional

from ._handlers import IterDocs, ListQrels
from ._turns import Turn, binary_qrels, turn_dataset

SUFFIX = "topic-passages"
QRELS_DEFS = {1: "the turn's own passage (its response, canonical passage or provenance passage)"}


class TopicPassage(NamedTuple):
    doc_id: str
    text: str
    source: str  # "canonical passage", "response" or "provenance passage"

    def default_text(self):
        return self.text


def response_passage(turn: Turn) -> List[TopicPassage]:
    """The turn's response as a passage (none when it has no response)."""
    text = (turn.extra.get("response") or "").strip()
    return [TopicPassage(f"{turn.qid}:response", text, "response")] if text else []


class _Corpus:
    """Documents, kept turns and their positives, computed from the topic files on each use."""

    def __init__(self, turns: Callable[[], List[Turn]], passages: Callable[[Turn], Iterable[TopicPassage]],
                 positives: Callable[[Turn], Iterable[str]], extra_docs: Optional[Callable[[], Iterable]] = None):
        self._turns, self._passages, self._positives, self._extra = turns, passages, positives, extra_docs

    def build(self):
        docs = {}
        for doc in (self._extra() if self._extra is not None else ()):
            docs.setdefault(doc.doc_id, TopicPassage(doc.doc_id, doc.text.strip(), "provenance passage"))
        turns = self._turns()
        for t in turns:
            for doc in self._passages(t):
                docs.setdefault(doc.doc_id, doc)
        kept, positives = [], {}
        for t in turns:
            said = {text.strip() for _, text in t.history}
            own = [d for d in dict.fromkeys(self._positives(t))
                   if d in docs and docs[d].text and docs[d].text not in said]
            if own:
                kept.append(t)
                positives[t.qid] = own
        return [d for d in docs.values() if d.text], kept, positives

    def docs(self):
        return self.build()[0]

    def turns(self):
        return self.build()[1]

    def qrels(self):
        _, _, positives = self.build()
        return binary_qrels((qid, d) for qid, docnos in positives.items() for d in docnos)


def variant(base_id: str, turns: Callable[[], List[Turn]], query: Callable[[Turn], tuple], query_cls, *,
            passages: Callable[[Turn], Iterable[TopicPassage]], positives: Callable[[Turn], Iterable[str]],
            columns, namespace: str, extra_docs: Optional[Callable[[], Iterable]] = None) -> dict:
    """``{"<base_id>/topic-passages": Dataset}``: ``passages(turn)`` are the documents a turn brings,
    ``positives(turn)`` its relevant docnos, ``extra_docs()`` documents of a passage file (iKAT provenance)."""
    corpus = _Corpus(turns, passages, positives, extra_docs)
    ds_id = f"{base_id}/{SUFFIX}"
    return {ds_id: turn_dataset(corpus.turns, query, query_cls,
                                docs=IterDocs(TopicPassage, corpus.docs, namespace, in_memory=True),
                                qrels=ListQrels(corpus.qrels, QRELS_DEFS), columns=columns, corpus=ds_id,
                                namespace=namespace)}
