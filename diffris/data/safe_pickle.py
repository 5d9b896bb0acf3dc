"""Read pickles that may only hold plain containers and scalars, without running anything.

The RRSIS-D annotations (``refs(unc).p``) are a pickle, and an ordinary ``pickle.load`` of a
downloaded file runs whatever code the file names. This reader admits only what pickle can build
without naming a class: dicts, lists, tuples, str, bytes, int, float, bool and None (and sets and
bytearrays in the protocols that have opcodes for them, 4 and 5).

Two independent guards, so that a mistake in one does not open the door:

1. Before anything is built, every opcode of the file is scanned (:mod:`pickletools`). Opcodes
   that name a global (``GLOBAL``, ``STACK_GLOBAL``) must name an allowlisted one; opcodes that
   create or configure class instances or fetch objects from elsewhere (``INST``, ``OBJ``,
   ``NEWOBJ``, ``NEWOBJ_EX``, ``BUILD``, ``PERSID``, ``BINPERSID``, ``EXT1/2/4``) are refused
   outright. ``REDUCE`` (a call) is then harmless: the only callables the stack can hold are the
   allowlisted ones.
2. The unpickler's ``find_class`` refuses every name but the allowlist, and maps each allowed
   name to a safe stand-in rather than to the real function.

The allowlist has one entry: ``_codecs.encode``, which protocols 0-2 use to store ``bytes``
(``encode(text, "latin1")``). It resolves to a function that only does that latin-1 encoding.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from diffris.errors import InputError, UnsafePickleError

#: Opcodes that build or configure instances, or fetch objects from outside the pickle.
_REFUSED_OPCODES = frozenset(
    {
        "INST",
        "OBJ",
        "NEWOBJ",
        "NEWOBJ_EX",
        "BUILD",
        "PERSID",
        "BINPERSID",
        "EXT1",
        "EXT2",
        "EXT4",
    }
)
_STRING_OPCODES = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"}
)
_MEMO_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """The one thing protocols 0-2 use ``_codecs.encode`` for: bytes stored as latin-1 text."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(
            f"_codecs.encode called with {type(text).__name__} and encoding {encoding!r}; "
            "only the latin-1 form pickle uses for bytes is allowed"
        )
    return text.encode("latin-1")


#: (module, name) -> the safe stand-in returned instead of the real object.
_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {("_codecs", "encode"): _latin1_encode}


def _refusal(name: str, what: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"{name} holds a {what} object; only plain containers and scalars are allowed"
    )


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` whose ``find_class`` admits only the allowlist.

    Use :func:`safe_load` / :func:`safe_loads`, which also scan the opcodes first.
    """

    def __init__(self, file: BinaryIO, *, name: str) -> None:
        # utf-8: Python 2 pickles store text as byte strings; strict so bad bytes fail loudly.
        super().__init__(file, encoding="utf-8", errors="strict")
        self._name = name

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 (documented on the class)
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise _refusal(self._name, f"{module}.{name}")
        return allowed

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise _refusal(self._name, "persistent-id")


def check_opcodes(data: bytes, *, name: str = "<bytes>") -> None:
    """Scan a pickle's opcodes and refuse anything beyond plain containers and scalars.

    Nothing is built or called: this only reads the opcode stream.

    Args:
        data: the whole pickle.
        name: how to name the source in error messages (e.g. the file's path).

    Raises:
        UnsafePickleError: an opcode names a global that is not allowlisted, or builds instances.
        InputError: the bytes are not a well-formed pickle.
    """
    memo: dict[Any, Any] = {}
    recent: list[Any] = []  # the last values pushed, to name STACK_GLOBAL's module and name
    try:
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(data)):
            op = opcode.name
            if op in _REFUSED_OPCODES:
                raise _refusal(name, f"class-instance (pickle opcode {op})")
            if op == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                if (module, attr) not in _ALLOWED:
                    raise _refusal(name, f"{module}.{attr}")
            elif op == "STACK_GLOBAL":
                pair = tuple(recent[-2:])
                if pair not in _ALLOWED:
                    label = ".".join(str(p) for p in pair) if len(pair) == 2 else "global"
                    raise _refusal(name, label)
            if op in _STRING_OPCODES:
                recent.append(arg)
            elif op in _MEMO_GET_OPCODES:
                recent.append(memo.get(arg))
            elif op in _MEMO_PUT_OPCODES:
                memo[arg] = recent[-1] if recent else None
            elif op == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif op not in ("FRAME", "PROTO"):
                recent.append(None)
            del recent[:-2]
    except UnsafePickleError:
        raise
    except ValueError as err:
        raise InputError(f"{name} is not a readable pickle: {err}") from err


def safe_loads(data: bytes, *, name: str = "<bytes>") -> Any:
    """Unpickle ``data`` if it holds only plain containers and scalars.

    Args:
        data: the pickle (any protocol 0-5; Python 2 pickles are read with utf-8 text).
        name: how to name the source in error messages (e.g. the file's path).

    Returns:
        The unpickled object, built only from dict, list, tuple, str, bytes, int, float, bool and
        None (plus set, frozenset and bytearray where the protocol has opcodes for them).

    Raises:
        UnsafePickleError: the pickle names any class or function (nothing is run).
        InputError: the bytes are not a well-formed pickle.
    """
    check_opcodes(data, name=name)
    try:
        return RestrictedUnpickler(io.BytesIO(data), name=name).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, ValueError) as err:
        raise InputError(f"{name} is not a readable pickle: {err}") from err


def safe_load(path: str | Path) -> Any:
    """Read and unpickle a file with :func:`safe_loads`; messages name the file's path."""
    path = Path(path)
    return safe_loads(path.read_bytes(), name=str(path))
