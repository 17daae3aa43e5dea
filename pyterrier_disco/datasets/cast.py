"""TREC CAsT: frames for ir_datasets' built-in ``trec-cast/v1/2020`` and the ``trec-cast/v3/2022`` registration."""
from typing import List

from ir_datasets.datasets.base import Dataset
from ir_datasets.datasets.trec_cast import QRELS_DEFS, Cast2022Query, CastPassageDoc
from ir_datasets.formats import TrecQrels

from ._files import (ConversationSource, ListQueries, OfficialFile, Turn, UnavailableDocs, check_utterance,
                     history_dicts)

NAME = "trec-cast"
_URL_2022 = "https://raw.githubusercontent.com/daltonj/treccastweb/master/2022/"
TOPICS_2022 = OfficialFile(NAME, "2022_evaluation_topics_flattened_duplicated_v1.0.json",
                           [_URL_2022 + "2022_evaluation_topics_flattened_duplicated_v1.0.json"])
QRELS_2022 = OfficialFile(NAME, "cast2022.qrel", [_URL_2022 + "cast2022.qrel"])

DOCS_2022_MESSAGE = (
    "The TREC CAsT 2022 passage collection (MS MARCO v2 documents, KILT and Washington Post v4, split into ~106M "
    "passages with the official offsets, duplicates removed) is not available offline, and ir_datasets 0.6.3 does "
    "not build it (its trec-cast v3 docs are disabled). Build it with the official tools "
    "(https://github.com/daltonj/treccastweb#year-4-trec-2022, https://github.com/grill-lab/trec-cast-tools) and "
    "index it yourself; the queries, qrels and conversation frames of trec-cast/v3/2022 work without it.")


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


def _queries_2022():
    for t in load_turns_2022():
        x = t.extra
        yield Cast2022Query(t.qid, x["parent_id"], x["participant"], t.query, x["human_rewrite"], x["response"],
                            list(x["provenance"]), int(t.conversation_id), _turn_number(t))


def _turn_number(turn) -> int:
    """The ``Y`` of a CAsT 2022 turn id ``<topic>_X-Y`` (``X`` names the branch), as ir_datasets' int field."""
    number = turn.qid.rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else turn.turn + 1


def rows_2022() -> List[dict]:
    return [{"qid": t.qid, "conversation_id": t.conversation_id, "turn": t.turn, "query": t.query,
             "history": history_dicts(t.history), "human_rewrite": t.extra["human_rewrite"],
             "response": t.extra["response"]} for t in load_turns_2022()]


def rows_2020(dataset) -> List[dict]:
    """Frame rows of ir_datasets' built-in ``trec-cast/v1/2020`` (no system responses in CAsT 2020)."""
    out, history, topic = [], [], None
    for q in dataset.queries_iter():
        if q.topic_number != topic:
            topic, history = q.topic_number, []
        utterance = check_utterance(q.raw_utterance, f"{q.query_id} (CAsT 2020)")
        if utterance is None:
            continue
        out.append({"qid": q.query_id, "conversation_id": str(q.topic_number), "turn": len(history),
                    "query": utterance, "history": history_dicts(history),
                    "human_rewrite": q.manual_rewritten_utterance or "",
                    "automatic_rewrite": q.automatic_rewritten_utterance or ""})
        history = history + [("user", utterance)]
    return out


def datasets() -> dict:
    return {f"{NAME}/v3/2022": Dataset(
        UnavailableDocs(CastPassageDoc, DOCS_2022_MESSAGE, NAME),
        ListQueries(Cast2022Query, _queries_2022, NAME),
        TrecQrels(QRELS_2022, QRELS_DEFS),
        ConversationSource(rows_2022),
    )}
