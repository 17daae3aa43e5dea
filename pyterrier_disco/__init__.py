"""pyterrier_disco: DiSCo conversational learned sparse retrieval for PyTerrier."""
__version__ = "0.1.0"

from .encoders import Splade, SpladeModel, embedded_model_path  # noqa: E402
from .student import DiSCo  # noqa: E402
from .index import SparseIndex, PisaBackend, new_index, open_index  # noqa: E402
from .efficiency import flops, query_length  # noqa: E402
from .datasets import conversations, register as register_datasets  # noqa: E402
from .conversation import ConversationFormatter, full_context  # noqa: E402

from .fusion import Fusion, fuse  # noqa: E402
from . import datasets, rewrite, train  # noqa: E402
from .rewrite import LLMRewriter, RewriteColumns, T5Rewriter  # noqa: E402

__all__ = [
    "Splade", "SpladeModel", "DiSCo", "embedded_model_path", "SparseIndex", "PisaBackend", "new_index",
    "open_index", "flops", "query_length", "conversations", "register_datasets", "ConversationFormatter",
    "full_context", "Fusion", "fuse", "LLMRewriter", "RewriteColumns", "T5Rewriter", "datasets", "rewrite", "train",
]

register_datasets()
