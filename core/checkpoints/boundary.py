"""The one place where a bad model file's faults become :class:`CheckpointError`.

A model file comes from anywhere, and what it says drives code that was
never written to distrust it: diffusers' converters index tensors by name
(KeyError), constructors divide by config values (ZeroDivisionError),
``load_state_dict`` compares shapes (RuntimeError), a path may be too long
for the file system (OSError). Checking every such case up front would copy
those libraries' rules; catching them at every call would scatter try/except
through the loaders. Instead each *public* loader is wrapped once
(:func:`checkpoint_boundary`), inner steps may name what they were reading
(:func:`file_faults`), and only :class:`CheckpointError` leaves: its message
names the file, what was being read and the original exception's type and
text (the original stays chained as ``__cause__`` for a developer).

Only the exception types a file's contents or path can provoke are
translated; NameError, ImportError, AssertionError and the like are
programming errors and pass unchanged. A wrong *argument* of the caller (an
unknown VAE kind) is a :class:`ChoiceError` and passes too: it is not the
file's fault.
"""
from __future__ import annotations

import functools
import inspect
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


class CheckpointError(ValueError):
    """A model file that cannot be used; the message names the file and why."""


class ChoiceError(ValueError):
    """A loader was called with an argument it cannot take (an option outside
    its closed set, a model without the part a LoRA patches): the caller's
    mistake, not the file's, so never turned into a CheckpointError."""


#: What a damaged or hostile file (or an unusable path) can make library code raise.
FILE_FAULTS = (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError,
               OSError, OverflowError, ZeroDivisionError, EOFError, struct.error)


@functools.cache
def file_faults_of_libraries() -> tuple[type[BaseException], ...]:
    """:data:`FILE_FAULTS` and the errors libraries raise for a config they
    refuse that derive from none of them: transformers' configs are
    huggingface_hub strict dataclasses (``vocab_size`` given as a float)."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # an older huggingface_hub: its configs raise TypeError/ValueError
        return FILE_FAULTS
    return (*FILE_FAULTS, StrictDataclassError)


def describe(error: BaseException) -> str:
    """``Type: message``, short: an OSError by its reason (the path is named anyway),
    a KeyError as the key that was missing."""
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    if isinstance(error, KeyError):
        return f"KeyError: no {error} entry"
    text = " ".join(str(error).split())  # one line: torch's and hub's messages span several
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


@contextmanager
def file_faults(path: Any, what: str) -> Iterator[None]:
    """Within the block, a file-provoked exception becomes a CheckpointError
    saying "``path``: cannot read the ``what`` (Type: message)", and a
    CheckpointError that does not name the file yet is prefixed with it."""
    try:
        yield
    except CheckpointError as error:
        if str(path) in str(error):
            raise
        raise CheckpointError(f"{path}: {error}") from error  # an inner step that knew no path
    except ChoiceError:
        raise
    except RecursionError:
        raise CheckpointError(f"{path}: cannot read the {what}: its data is nested too "
                              "deeply (RecursionError)") from None
    except file_faults_of_libraries() as error:
        raise CheckpointError(f"{path}: cannot read the {what} ({describe(error)})") from error


def checkpoint_boundary(what: str, path_arg: str = "path",
                        locate: Callable[[Any], Any] | None = None):
    """Decorate a public loader: its ``path_arg`` argument is the file named in
    every error (mapped through ``locate``, e.g. a built-in name to its file)."""
    def decorate(loader: Callable) -> Callable:
        signature = inspect.signature(loader)

        @functools.wraps(loader)
        def guarded(*args, **kwargs):
            given = signature.bind_partial(*args, **kwargs).arguments.get(path_arg, "?")
            with file_faults(_shown(given, locate), what):
                return loader(*args, **kwargs)

        return guarded

    return decorate


def _shown(given: Any, locate: Callable[[Any], Any] | None) -> Any:
    """The file as an error names it, as the loaders name it too (``~``
    expanded), or the argument itself when it cannot be located."""
    try:
        if locate is not None:
            return locate(given)
        return Path(given).expanduser() if isinstance(given, (str, os.PathLike)) else given
    except (*FILE_FAULTS, RecursionError):
        return given

