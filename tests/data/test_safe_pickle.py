"""The restricted unpickler: plain data loads, anything that could run code is refused unrun."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

import pytest

from diffris.data.safe_pickle import safe_load, safe_loads
from diffris.errors import InputError, UnsafePickleError

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


class RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class RunsExec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


class Plain:
    def __init__(self) -> None:
        self.value = 1


def test_protocols_cover_zero_to_five():
    assert list(PROTOCOLS) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_loads_plain_list_of_dicts(protocol):
    refs = [
        {
            "ref_id": 7,
            "split": "val",
            "sentences": [{"raw": "The ship — left", "sent_id": 9, "tokens": ["the", "ship"]}],
            "bbox": (1.5, 2.0, 30, 40),
            "big": 10**30,
            "flag": True,
            "none": None,
            "raw_bytes": b"\x00\xffabc",
        },
        [],
        (),
    ]
    assert safe_loads(pickle.dumps(refs, protocol=protocol)) == refs


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("payload", "named"), [(RunsShell, "posix.system"), (RunsExec, "exec")])
def test_refuses_code_and_runs_nothing(tmp_path, protocol, payload, named):
    marker = tmp_path / "pwned"
    data = pickle.dumps([{"ok": 1}, payload(marker)], protocol=protocol)
    with pytest.raises(UnsafePickleError, match=rf"holds a \S*{named} object; only plain"):
        safe_loads(data, name="refs(unc).p")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refuses_class_instance(protocol):
    with pytest.raises(UnsafePickleError, match="only plain containers and scalars are allowed"):
        safe_loads(pickle.dumps({"x": Plain()}, protocol=protocol))


def test_message_names_file_and_class(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([RunsShell(tmp_path / "pwned")], protocol=2))
    with pytest.raises(UnsafePickleError) as caught:
        safe_load(path)
    assert str(caught.value) == (
        f"{path} holds a posix.system object; only plain containers and scalars are allowed"
    )
    assert not (tmp_path / "pwned").exists()


def test_global_named_through_the_memo_is_refused(tmp_path):
    """Protocol 4: module and name pushed, memoised, and fetched back before STACK_GLOBAL."""
    marker = tmp_path / "pwned"
    command = f"touch {marker}".encode()
    data = (
        b"\x80\x04"
        + b"\x8c\x05posix\x94"  # SHORT_BINUNICODE 'posix', MEMOIZE (0)
        + b"\x8c\x06system\x94"  # SHORT_BINUNICODE 'system', MEMOIZE (1)
        + b"0" * 2  # POP both
        + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
        + b"\x8c"
        + bytes([len(command)])
        + command
        + b"\x85R."  # TUPLE1, REDUCE, STOP
    )
    with pytest.raises(UnsafePickleError, match="posix.system"):
        safe_loads(data)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "opcode"),
    [
        (b"\x80\x02}q\x00}q\x01b.", "BUILD"),  # BUILD on a plain dict
        (b"\x80\x02\x82\x01.", "EXT1"),  # extension registry lookup, bypasses find_class
        (b"\x80\x02X\x01\x00\x00\x00aQ.", "BINPERSID"),
    ],
)
def test_refuses_instance_opcodes(data, opcode):
    with pytest.raises(UnsafePickleError, match=opcode):
        safe_loads(data)


def test_codecs_encode_only_as_bytes_latin1():
    """Protocol 2 stores bytes as _codecs.encode(text, 'latin1'); any other codec is refused."""
    assert safe_loads(pickle.dumps(b"\x01\xfe", protocol=2)) == b"\x01\xfe"
    zlib_call = (
        b"\x80\x02c_codecs\nencode\nq\x00"
        b"X\x03\x00\x00\x00abcq\x01X\x04\x00\x00\x00zlibq\x02\x86q\x03Rq\x04."
    )
    with pytest.raises(UnsafePickleError, match="'zlib'"):
        safe_loads(zlib_call)


@pytest.mark.parametrize("data", [b"", b"\x80\x04", b"not a pickle", pickle.dumps([1, 2])[:-3]])
def test_malformed_pickle_is_input_error(data):
    with pytest.raises(InputError, match="is not a readable pickle"):
        safe_loads(data, name="refs(unc).p")


def test_calling_a_plain_value_runs_nothing():
    """REDUCE on a string (no global anywhere) fails as a malformed pickle."""
    with pytest.raises(InputError, match="not a readable pickle"):
        safe_loads(b"\x80\x02X\x01\x00\x00\x00a)R.")
