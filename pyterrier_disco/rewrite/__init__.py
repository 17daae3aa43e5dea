"""Query rewriters over conversation frames: rewrite columns, LLM (DiSCo Table 2 prompt) and CANARD T5 rewriters.

Each rewriter is a query-to-query ``pt.Transformer``: the utterance moves to ``query_0``, the rewrite goes to
``query``. ``RewriteColumns`` / ``.as_column(name)`` add rewrites as extra columns instead (teachers).
"""
from .base import Column, GenerativeRewriter, QueryRewriter, RewriteColumns, REWRITE_POLICIES
from .cache import RewriteCache
from .llm import LLMRewriter
from .models import default_model_path, gguf_to_model, converted_gguf_dir
from .prompt import CONTEXT_POLICIES, PROMPT_VARIANTS, PromptBuilder, first_line, is_junk, prompt_fingerprint
from .t5 import T5Rewriter, canard_input

__all__ = ["Column", "LLMRewriter", "T5Rewriter", "RewriteColumns", "QueryRewriter", "GenerativeRewriter",
           "RewriteCache", "PromptBuilder", "canard_input", "first_line", "is_junk", "default_model_path",
           "gguf_to_model", "converted_gguf_dir", "CONTEXT_POLICIES", "REWRITE_POLICIES",
           "PROMPT_VARIANTS", "prompt_fingerprint"]
