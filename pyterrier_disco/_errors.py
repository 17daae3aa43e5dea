"""The project's exceptions for problems of input, files or the environment (never for bugs).

The ``disco`` command line prints these, and ``OSError``/``ValueError``, as one line; any other exception is
a bug and keeps its traceback. The subclasses also derive from the built-in type the library raised before,
so ``except KeyError`` in user code keeps working.
"""


class DiscoError(Exception):
    """Base of the errors caused by what the user gave (data, options, files), not by a bug."""

    def __str__(self):
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InputKeyError(DiscoError, KeyError):
    """A column, field or document the input lacks."""


class InputTypeError(DiscoError, TypeError):
    """An input value of the wrong type (a float where a text is needed...)."""


class CorruptFileError(DiscoError, ValueError):
    """A file that cannot be read as what it should be (invalid JSON, a truncated tensor file...);
    the message names the file."""


class ModelLoadError(DiscoError, OSError):
    """A model that cannot be loaded: a folder without weights or tokenizer, a damaged file, a hub id
    while offline."""


class MissingExtraError(DiscoError, ImportError):
    """An optional dependency (an extra such as ``ray`` or ``vllm``, or a model package) is not installed."""


class ClusterError(DiscoError, RuntimeError):
    """A Ray cluster that cannot be reached, or a distributed build whose workers failed."""
