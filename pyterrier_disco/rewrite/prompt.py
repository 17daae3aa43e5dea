"""The DiSCo rewriting prompt (Table 2 of the paper, one-shot, and its zero-shot variant), context policies
and junk detection.

**The text** is DiSCo (Lupart, Aliannejadi, Kanoulas, SIGIR 2025), Table 2, verbatim: the instruction, the
QReCC yoga example under ``# Example 1:``, then ``# Example 2:`` with the turn to rewrite
(``../shared/papers/disco-sigir2025.txt``, characters 26672-27295 of the one-line extraction; every word,
header and punctuation mark below is the paper's).

**The line layout** is this project's reading: the extraction turned every line break into a space, so the
paper fixes the words but not the breaks. Each ``#`` header starts a line; the instruction text stays on the
``# Instruction:`` line, and the content of ``# Context:``, ``# Please rewrite the following user question:``
and ``# Re-written query:`` goes on the following line(s); each context turn is one ``user: ...`` /
``system: ...`` line; no blank lines; the prompt ends with a line break after ``# Re-written query:`` so that
the model writes the rewrite on its own line. This is the layout of the follow-up's own template (github
Janhutter/disco-conv-splade ``setup_script/generate_rewrites.py`` lines 12-21 at d9e501d: the same headers,
instruction inline, ``user: {q}`` / ``system: {a}`` turns), minus its blank lines and trailing spaces.

**Context formatting** (``<ctx>``; the paper does not say how it is built): earlier turns *oldest first*, as
the example shows one chronological ``user``/``system`` pair (the follow-up's script lists turns newest first,
a choice of that script, not of the paper); system responses whole (``context="full"``, the default), cut to
their first ``max_response_words`` words (``truncated``) or left out (``user``); a turn's line breaks are
flattened so each turn is one line; a first turn has an empty context (``# Context:`` directly followed by the
question header). When the prompt is longer than ``max_tokens`` the *oldest* context lines are dropped first,
so the instruction, the example and the question always stay.

**Zero-shot** (``variant="zero-shot"``): the paper says it "experimented in both zero-shot and one-shot" and
kept one-shot, without giving the zero-shot text. This project reads it as the same prompt without the example:
no ``# Example 1:`` block and no ``# Example 2:`` header.
"""
import hashlib
import re
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

INSTRUCTION = ("# Instruction: I will give you a conversation between a user and a system. "
               "You should rewrite the last question of the user into a self-contained query.")
EXAMPLE_HISTORY = (
    {"role": "user", "text": "Tell me about the benefit of Yoga?"},
    {"role": "system", "text": "Increased flexibility, muscle strength."},
)
EXAMPLE_QUESTION = "Does it help in reducing stress?"
EXAMPLE_REWRITE = "Does Yoga help in reducing stress?"

CONTEXT_POLICIES = ("full", "truncated", "user")
PROMPT_VARIANTS = ("one-shot", "zero-shot")

_HEADER_CONTEXT = "# Context:"
_HEADER_QUESTION = "# Please rewrite the following user question:"
_HEADER_REWRITE = "# Re-written query:"


def _block(history_lines: Sequence[str], utterance: str) -> List[str]:
    return [_HEADER_CONTEXT, *history_lines, _HEADER_QUESTION, utterance, _HEADER_REWRITE]


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
    """Builds the rewriting prompt for a turn: Table 2's one-shot prompt (default) or its zero-shot variant.

    ``max_tokens`` (with ``count_tokens``) bounds the prompt length: the oldest context lines are dropped
    first, so the instruction, the example and the current utterance always stay.
    """
    context: str = "full"
    max_response_words: int = 64
    max_tokens: Optional[int] = None
    count_tokens: Optional[Callable[[str], int]] = None
    variant: str = "one-shot"

    def __post_init__(self):
        if self.context not in CONTEXT_POLICIES:
            raise ValueError(f"unknown context policy {self.context!r}; expected one of {CONTEXT_POLICIES}")
        if self.variant not in PROMPT_VARIANTS:
            raise ValueError(f"unknown prompt variant {self.variant!r}; expected one of {PROMPT_VARIANTS}")

    @property
    def preamble(self) -> List[str]:
        """The lines before the turn's own block: the instruction, and for one-shot the example."""
        if self.variant == "zero-shot":
            return [INSTRUCTION]
        example = _block(context_lines(EXAMPLE_HISTORY), EXAMPLE_QUESTION)
        return [INSTRUCTION, "# Example 1:", *example, EXAMPLE_REWRITE, "# Example 2:"]

    def __call__(self, utterance: str, history: Sequence[dict] = ()) -> str:
        lines = context_lines(history, self.context, self.max_response_words)
        utterance = " ".join(str(utterance).split())
        preamble = self.preamble

        def build(drop: int) -> str:
            return "\n".join(preamble + _block(lines[drop:], utterance)) + "\n"

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


# a probe turn whose prompt shows the template, the context order and the response policy (its system
# response is longer than any word limit a user would set, so truncation shows too)
_PROBE_HISTORY = ({"role": "user", "text": "<first question>"},
                  {"role": "system", "text": " ".join(f"<answer word {i}>" for i in range(1000))},
                  {"role": "user", "text": "<second question>"})


def prompt_fingerprint(build: Callable[..., str]) -> str:
    """A short hash of a prompt template: the prompt ``build`` gives for a fixed probe turn.

    Two prompt builders with the same fingerprint give the same prompt (template, variant, context order and
    response policy) for that turn; teacher runs record it so that a run built with another prompt is
    recognised. The token limit is not covered (it is recorded with the model's settings).
    """
    text = build("<utterance>", list(_PROBE_HISTORY))
    if not isinstance(text, str):
        raise TypeError(f"a prompt builder must return a string, got {type(text).__name__}")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


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
