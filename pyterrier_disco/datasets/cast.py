"""TREC CAsT registrations: ``trec-cast/v2/2021`` and ``trec-cast/v3/2022`` (official topics with manual
rewrites, official qrels; the collections are not built here) and their ``/topic-passages`` variants (see
:mod:`.topic_passages`). ir_datasets' built-in CAsT 2019/2020 ids are in :mod:`.cast_builtin`."""
from typing import List

from ir_datasets.datasets.trec_cast import QRELS_DEFS, Cast2021Query, Cast2022Query, CastPassageDoc
from ir_datasets.formats import TrecQrels

from . import topic_passages
from ._files import OfficialFile
from ._handlers import UnavailableDocs
from ._turns import Turn, check_utterance, exchange_turns, turn_dataset

NAME = "trec-cast"
TOPICS_2021 = OfficialFile(NAME, "2021_manual_evaluation_topics_v1.0.json")
QRELS_2021 = OfficialFile(NAME, "trec-cast-qrels-docs.2021.qrel")
TOPICS_2022 = OfficialFile(NAME, "2022_evaluation_topics_flattened_duplicated_v1.0.json")
QRELS_2022 = OfficialFile(NAME, "cast2022.qrel")
COLUMNS_2021 = ("human_rewrite", "automatic_rewrite", "response", "canonical_result_id", "canonical_passage_id")
COLUMNS_2022 = ("human_rewrite", "response")


def _unavailable(year: str, what: str, version: str) -> str:
    return (f"The TREC CAsT {year} passage collection ({what}) is not available offline, and ir_datasets 0.6.3 "
            f"does not build it (its trec-cast {version} docs are disabled). Build it with the official tools "
            f"(https://github.com/daltonj/treccastweb, https://github.com/grill-lab/trec-cast-tools) and index it "
            f"yourself; the queries, qrels and conversation frames work without it, and the "
            f"/topic-passages variant holds the passages of the topic file as a small corpus.")


DOCS_2021_MESSAGE = _unavailable("2021", "MS MARCO v1 documents, KILT and Washington Post v4, split into passages "
                                 "with the official offsets", "v2")
DOCS_2022_MESSAGE = _unavailable("2022", "MS MARCO v2 documents, KILT and Washington Post v4, split into ~106M "
                                 "passages with the official offsets, duplicates removed", "v3")


def load_turns_2021() -> List[Turn]:
    """Turns of the CAsT 2021 manual topics. The system side of the history is each earlier turn's canonical
    response passage (``passage``), as the track defines it; its docno is ``<canonical_result_id>-<passage_id>``,
    the passage id of the CAsT 2021 collection."""
    turns = []
    for topic in TOPICS_2021.load_json():
        number = str(topic["number"])
        turns += exchange_turns(number, topic.get("turn", []), "CAsT 2021",
                                lambda i, t, number=number: f"{number}_{t.get('number')}", "raw_utterance",
                                "passage", _extra_2021)
    return turns


def _extra_2021(t: dict) -> dict:
    result = t.get("canonical_result_id") or ""
    return {"human_rewrite": t.get("manual_rewritten_utterance") or "",
            "automatic_rewrite": t.get("automatic_rewritten_utterance") or "", "response": t.get("passage") or "",
            "canonical_result_id": result,
            "canonical_passage_id": f"{result}-{t['passage_id']}" if result and "passage_id" in t else ""}


def _query_2021(t: Turn) -> Cast2021Query:
    x = t.extra
    return Cast2021Query(t.qid, t.query, x["automatic_rewrite"], x["human_rewrite"], x["canonical_result_id"],
                         int(t.conversation_id), int(t.qid.rsplit("_", 1)[1]))


def _canonical_passage(t: Turn):
    x = t.extra
    if x["canonical_passage_id"] and x["response"].strip():
        return [topic_passages.TopicPassage(x["canonical_passage_id"], x["response"].strip(), "canonical passage")]
    return []


def load_turns_2022() -> List[Turn]:
    """Turns of the flattened CAsT 2022 topics. Each entry of the file is one branch of a topic's conversation
    tree (shared turns duplicated); a turn's history is its own branch up to it, or its ``parent`` chain when the
    file carries ``parent`` links (tree format). Duplicated turns appear once."""
    topics = TOPICS_2022.load_json()
    by_qid, parents, order, branch_history = {}, {}, [], {}
    for topic in topics:
        number = str(topic["number"])
        prefix = []  # this branch's copies of its earlier valid turns: a shared turn's response may differ per branch
        for t in topic.get("turn", []):
            qid = f"{number}_{t.get('number')}"
            if qid in by_qid:  # a duplicated copy: its (branch-specific) texts only serve as history
                utterance = t.get("utterance")
            else:
                utterance = check_utterance(t.get("utterance"), f"{qid} (CAsT 2022)")
            if not isinstance(utterance, str):
                continue
            if qid not in by_qid:
                by_qid[qid] = (number, utterance, t)
                parents[qid] = f"{number}_{t['parent']}" if t.get("parent") else None
                branch_history[qid] = list(prefix)
                order.append(qid)
            prefix.append((utterance, t.get("response") or ""))
    use_parents = any(p is not None for p in parents.values())
    turns = []
    for qid in order:
        number, utterance, t = by_qid[qid]
        if use_parents:
            chain, p = [], parents[qid]
            while p is not None and p in by_qid and p not in chain:
                chain.append(p)
                p = parents[p]
            earlier = [(by_qid[e][1], by_qid[e][2].get("response") or "") for e in reversed(chain)]
        else:
            earlier = branch_history[qid]
        history = []
        for e_utt, e_resp in earlier:
            history.append(("user", e_utt))
            if e_resp:
                history.append(("system", e_resp))
        extra = {"human_rewrite": t.get("manual_rewritten_utterance") or "", "response": t.get("response") or "",
                 "provenance": tuple(t.get("provenance") or ()), "parent_id": parents[qid] or "",
                 "participant": t.get("participant") or ""}
        turns.append(Turn(qid, number, len(earlier), utterance, tuple(history), extra))
    return turns


def _query_2022(t: Turn) -> Cast2022Query:
    x = t.extra
    return Cast2022Query(t.qid, x["parent_id"], x["participant"], t.query, x["human_rewrite"], x["response"],
                         list(x["provenance"]), int(t.conversation_id), _turn_number(t))


def _turn_number(turn) -> int:
    """The ``Y`` of a CAsT 2022 turn id ``<topic>_X-Y`` (``X`` names the branch), as ir_datasets' int field."""
    number = turn.qid.rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else turn.turn + 1


def datasets() -> dict:
    out = {
        f"{NAME}/v2/2021": turn_dataset(load_turns_2021, _query_2021, Cast2021Query,
                                        docs=UnavailableDocs(CastPassageDoc, DOCS_2021_MESSAGE, NAME),
                                        qrels=TrecQrels(QRELS_2021, QRELS_DEFS), columns=COLUMNS_2021,
                                        corpus=f"{NAME}/v2", namespace=NAME),
        f"{NAME}/v3/2022": turn_dataset(load_turns_2022, _query_2022, Cast2022Query,
                                        docs=UnavailableDocs(CastPassageDoc, DOCS_2022_MESSAGE, NAME),
                                        qrels=TrecQrels(QRELS_2022, QRELS_DEFS), columns=COLUMNS_2022,
                                        corpus=f"{NAME}/v3", namespace=NAME),
    }
    out.update(topic_passages.variant(f"{NAME}/v2/2021", load_turns_2021, _query_2021, Cast2021Query,
                                      passages=_canonical_passage,
                                      positives=lambda t: [t.extra["canonical_passage_id"]],
                                      columns=COLUMNS_2021, namespace=NAME))
    out.update(topic_passages.variant(f"{NAME}/v3/2022", load_turns_2022, _query_2022, Cast2022Query,
                                      passages=topic_passages.response_passage,
                                      positives=lambda t: [f"{t.qid}:response"], columns=COLUMNS_2022,
                                      namespace=NAME))
    return out
