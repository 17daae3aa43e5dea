"""Parsed turns and what every loader builds from them: frame rows, binary qrels, the ir_datasets Dataset."""
import warnings
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Sequence

from ir_datasets.datasets.base import Dataset
from ir_datasets.formats import TrecQrel

from ._handlers import ConversationSource, ListQrels, ListQueries


class Turn(NamedTuple):
    """Parsed turn shared by the query records and the conversation frames."""
    qid: str
    conversation_id: str
    turn: int
    query: str
    history: tuple  # of (role, text)
    extra: dict     # dataset-specific columns: rewrites, response, ptkb, ...


def history_dicts(history) -> List[dict]:
    return [{"role": role, "text": text} for role, text in history]


def frame_rows(turns: Iterable[Turn], columns: Sequence[str] = ("human_rewrite", "response")) -> List[dict]:
    """Conversation-frame rows: ``qid, conversation_id, turn, query, history`` and those of ``columns`` that a
    turn's ``extra`` holds."""
    return [{"qid": t.qid, "conversation_id": t.conversation_id, "turn": t.turn, "query": t.query,
             "history": history_dicts(t.history), **{c: t.extra[c] for c in columns if c in t.extra}}
            for t in turns]


def exchange_turns(conversation_id: str, records: Iterable[dict], label: str, qid: Callable[[int, dict], str],
                   utterance: str, response: str, extra: Callable[[dict], dict]) -> List[Turn]:
    """Turns of one conversation whose records hold an utterance and a response (fields named ``utterance`` and
    ``response``): a turn's history is the earlier turns' utterances and responses. ``qid(i, record)`` names
    turn ``i`` (0 first), ``extra(record)`` gives its other columns; malformed turns are skipped with a warning."""
    turns, history = [], []
    for i, t in enumerate(records):
        turn_id = qid(i, t)
        text = check_utterance(t.get(utterance), f"{turn_id} ({label})")
        if text is None:
            continue
        turns.append(Turn(turn_id, conversation_id, len(history) // 2, text, tuple(history), extra(t)))
        history += [("user", text), ("system", t.get(response) or "")]
    return turns


def check_utterance(value, where: str) -> Optional[str]:
    """The utterance as str, or None (with a warning naming ``where``) when the turn is malformed."""
    if not isinstance(value, str):
        warnings.warn(f"skipping malformed turn {where}: missing or non-text utterance ({value!r})", stacklevel=3)
        return None
    if not value.strip():
        warnings.warn(f"turn {where} has an empty utterance; kept (its history still carries context)", stacklevel=3)
    return value


def binary_qrels(pairs: Iterable) -> Iterator[TrecQrel]:
    seen = set()
    for qid, docno in pairs:
        if (qid, docno) not in seen:
            seen.add((qid, docno))
            yield TrecQrel(qid, docno, 1, "0")


def positive_qrels(turns: Callable[[], List[Turn]], positives: Callable[[Turn], Iterable[str]],
                   defs: dict) -> ListQrels:
    """Binary qrels: each turn's ``positives(turn)`` docnos are relevant."""
    return ListQrels(lambda: binary_qrels((t.qid, d) for t in turns() for d in positives(t)), defs)


def context_history(context) -> tuple:
    """History from a QReCC/TopiOCQA ``Context`` list: ``[q1, a1, q2, a2, ...]`` alternates user and system."""
    return tuple(("user" if i % 2 == 0 else "system", str(text)) for i, text in enumerate(context or ()))


def qa_turns(records, label: str, extra) -> List[Turn]:
    """Turns of a TopiOCQA/QReCC-style file (``Conversation_no``, ``Turn_no``, ``Question``, ``Context``);
    ``extra(record)`` gives the dataset's other fields. Malformed turns are skipped with a warning."""
    turns = []
    for t in records:
        qid = f"{t.get('Conversation_no')}_{t.get('Turn_no')}"
        question = check_utterance(t.get("Question"), f"{qid} ({label})")
        if question is None:
            continue
        history = context_history(t.get("Context"))
        turns.append(Turn(qid, str(t.get("Conversation_no")), len(history) // 2, question, history, extra(t)))
    return turns


def turn_dataset(turns: Callable[[], List[Turn]], query: Callable[[Turn], tuple], query_cls, *, docs, qrels,
                 columns: Sequence[str], corpus: str, namespace: str) -> Dataset:
    """The ir_datasets Dataset of a list of turns: ``query(turn)`` makes its query record, ``columns`` of the
    turns' ``extra`` go to the conversation frame, ``corpus`` names the document collection (see
    :class:`ConversationSource`)."""
    return Dataset(
        docs,
        ListQueries(query_cls, lambda: map(query, turns()), namespace),
        qrels,
        ConversationSource(lambda: frame_rows(turns(), columns), corpus),
    )


def split_ids(prefix: str, splits: Sequence[str], build: Callable[[str], Dataset]) -> dict:
    """``{f"{prefix}/{split}": build(split)}`` for every split."""
    return {f"{prefix}/{split}": build(split) for split in splits}
