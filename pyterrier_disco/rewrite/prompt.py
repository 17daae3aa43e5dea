"""The DiSCo one-shot rewriting prompt, context policies and junk detection.

Prompt format: DiSCo (Lupart, Aliannejadi, Kanoulas, SIGIR 2025), Table 2 -- an instruction, one worked
example (a conversation about yoga and its rewrite), then ``# Context:`` with ``user:``/``system:`` lines,
``# Please rewrite the following user question:``, the utterance, and ``# Re-written query:``. The
section headers, their one-per-line layout and the ``user: ...`` / ``system: ...`` context lines follow
the authors' own rewriting scripts (github SimonLupart/ikat-baseline ``DATA/rewrite_gpt_ikat.py`` and
SimonLupart/ikat-2024-baseline ``rewrite_gpt.py``; their iKAT-only "background about the user" (PTKB)
sentence and section are left out, as in DiSCo). The paper's verbatim example text could not be
retrieved offline: the yoga example below reproduces its shape (a short yoga exchange and its
self-contained rewrite), not necessarily its exact words.
"""
import re
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

INSTRUCTION = ("# Instruction:\nI will give you a conversation between a user and a system. "
               "You should rewrite the last question of the user into a self-contained query.")
EXAMPLE_HISTORY = (
    {"role": "user", "text": "I would like to start doing yoga at home. Which style is good for beginners?"},
    {"role": "system", "text": "Hatha yoga is a good start: it uses slow, basic poses and focuses on breathing."},
)
EXAMPLE_QUESTION = "What are its benefits?"
EXAMPLE_REWRITE = "What are the benefits of Hatha yoga for beginners practicing at home?"

CONTEXT_POLICIES = ("full", "truncated", "user")

_HEADER_CONTEXT = "# Context:"
_HEADER_QUESTION = "# Please rewrite the following user question:"
_HEADER_REWRITE = "# Re-written query:"


def _block(history_lines: Sequence[str], utterance: str) -> str:
    return "\n".join([_HEADER_CONTEXT, *history_lines, _HEADER_QUESTION, utterance, _HEADER_REWRITE]) + "\n"


def context_lines(history: Sequence[dict], policy: str = "full", max_response_words: int = 64) -> List[str]:
    """One ``role: text`` line per earlier turn, oldest first, under a context policy.

    ``full`` keeps system responses whole, ``truncated`` keeps their first ``max_response_words`` words,
    ``user`` drops them. Line breaks inside a turn are flattened so that each turn stays one line.
    """
    if policy not in CONTEXT_POLICIES:
        raise ValueError(f"unknown context policy {policy!r}; expected one of {CONTEXT_POLICIES}")
    lines = []
    for i, turn in enumerate(history):
        if not isinstance(turn, dict) or "role" not in turn or "text" not in turn:
            raise ValueError(f"history entry {i} must be a dict with 'role' and 'text', got {turn!r}")
        role, text = turn["role"], " ".join(str(turn["text"]).split())
        if role not in ("user", "system"):
            raise ValueError(f"history entry {i} has role {role!r}; expected 'user' or 'system'")
        if role == "system":
            if policy == "user":
                continue
            if policy == "truncated":
                text = " ".join(text.split()[:max_response_words])
        lines.append(f"{role}: {text}")
    return lines


@dataclass(frozen=True)
class PromptBuilder:
    """Builds the one-shot rewriting prompt for a turn.

    ``max_tokens`` (with ``count_tokens``) bounds the prompt length: the oldest context lines are dropped
    first, so the instruction, the example and the current utterance always stay.
    """
    context: str = "full"
    max_response_words: int = 64
    max_tokens: Optional[int] = None
    count_tokens: Optional[Callable[[str], int]] = None

    def __post_init__(self):
        if self.context not in CONTEXT_POLICIES:
            raise ValueError(f"unknown context policy {self.context!r}; expected one of {CONTEXT_POLICIES}")

    @property
    def preamble(self) -> str:
        example = _block(context_lines(EXAMPLE_HISTORY), EXAMPLE_QUESTION) + EXAMPLE_REWRITE + "\n"
        return INSTRUCTION + "\n\n" + example + "\n"

    def __call__(self, utterance: str, history: Sequence[dict] = ()) -> str:
        lines = context_lines(history, self.context, self.max_response_words)
        utterance = " ".join(str(utterance).split())

        def build(drop: int) -> str:
            return self.preamble + _block(lines[drop:], utterance)

        def fits(drop: int) -> bool:
            return self.count_tokens(build(drop)) <= self.max_tokens

        if self.max_tokens is None or self.count_tokens is None or fits(0):
            return build(0)
        # the fewest oldest lines to drop, by binary search (fewer lines never make a longer prompt);
        # with every line dropped the prompt may still be too long: the backend then truncates on the left
        lo, hi = 1, len(lines)
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(mid):
                hi = mid
            else:
                lo = mid + 1
        return build(hi)


_LABEL = re.compile(r"^\s*(re-?written query|rewrite|query)\s*:\s*", re.IGNORECASE)


def first_line(generation: str) -> str:
    """The first non-empty line of a generation, without a leading ``Re-written query:`` label or quotes."""
    for line in generation.splitlines():
        line = line.strip()
        if line:
            line = _LABEL.sub("", line).strip()
            if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
                line = line[1:-1].strip()
            return line
    return ""


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def is_junk(rewrite: str) -> bool:
    """Whether a rewrite is unusable: empty, a prompt header (``#...``), a ``user:``/``system:`` line,
    or a copy of the prompt's worked example."""
    text = rewrite.strip()
    if not text or text.startswith("#") or re.match(r"^(user|system)\s*:", text, re.IGNORECASE):
        return True
    norm = _norm(text)
    return not norm or norm in (_norm(EXAMPLE_REWRITE), _norm(EXAMPLE_QUESTION)) or _norm(EXAMPLE_REWRITE) in norm
