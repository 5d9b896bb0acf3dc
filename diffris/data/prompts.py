"""Description files: the natural-language prompts a scene is segmented with.

Three formats, chosen by the file extension:

- **YAML** (``.yaml``/``.yml``) and **JSON** (``.json``): a list whose items are either a mapping
  ``{id, text, threshold?}`` or a plain string, or a mapping ``{"prompts": [...]}`` holding that
  list. YAML is read with ``yaml.safe_load`` only.
- **Plain text** (any other extension): one description per line. Lines whose first non-blank
  character is ``#`` are comments; blank lines are skipped; a ``#`` later in a line is kept.

A prompt without an explicit id gets ``p<n>``, its 1-based position in the file, so ids are stable
as long as the order is. Whitespace inside a text is collapsed to single spaces (CLIP's tokenizer
ignores it anyway, and it keeps :func:`prompt_set_hash` stable). Texts longer than the model's
text encoder reads (CLIP: 77 tokens, SigLIP: 64) are accepted here; the model truncates them and
warns.

Every problem raises :class:`~diffris.errors.PromptFileError` with one line naming the file and
the line, e.g. ``prompts.yaml line 7: duplicate id 'roads' (first on line 3); give each prompt a
unique id``.
"""

from __future__ import annotations

import hashlib
import json
import json.decoder
import json.scanner
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from diffris import strict_yaml
from diffris.config import Config
from diffris.errors import InputError, InputNotFoundError, PromptFileError
from diffris.messages import clip, cut

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_TEXT_CHARS",
    "Prompt",
    "load_prompts",
    "prompt_set_hash",
    "prompts_from_texts",
]

#: Description files larger than this are refused (they are untrusted input, and no real prompt
#: set comes close).
MAX_FILE_BYTES = 1 << 20
#: A description longer than this is a mistake (the text encoders read 64-77 tokens, about 300
#: characters).
MAX_TEXT_CHARS = 1000
_KEYS = ("id", "text", "threshold")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Prompt(Config):
    """One description to segment.

    Attributes:
        id: short identifier, unique within a prompt set (band tag, Zarr coordinate label).
        text: the natural-language description.
        threshold: probability above which a pixel is in the mask, in (0, 1); ``None`` uses the
            run's default.
    """

    id: str
    text: str
    threshold: float | None = None


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read a description file (YAML, JSON or plain text, by extension).

    Args:
        path: the file.

    Returns:
        The prompts in file order.

    Raises:
        InputNotFoundError: ``path`` does not exist or is not a file.
        PromptFileError: the file is empty, too large, not UTF-8, malformed, or holds an invalid
            prompt; the message names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"description file {path} not found; check the path")
    with path.open("rb") as file:  # read no more than the limit: the file may be endless
        raw = file.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise PromptFileError(
            f"{path} is {path.stat().st_size} bytes, more than the {MAX_FILE_BYTES} allowed "
            "for a description file; is it the right file?"
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PromptFileError(f"{path} is UTF-16 text; save it as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise PromptFileError(f"{path} line {line}: not UTF-8 text; save it as UTF-8") from err
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        items = _parse_yaml(path, text)
    elif suffix == ".json":
        items = _parse_json(path, text)
    else:
        items = _parse_text(text)
    if not items:
        raise PromptFileError(
            f"{path}: no prompts (the file is empty or only comments); add at least one description"
        )
    return _build(path, items)


def prompts_from_texts(texts: list[str]) -> list[Prompt]:
    """Prompts from descriptions given on the command line (``--text``), with ids p1, p2, ...

    Raises:
        InputError: a text is empty.
    """
    prompts = []
    for number, raw in enumerate(texts, start=1):
        if isinstance(raw, str) and not _normalise(raw):
            raise InputError(
                f"--text number {number} is empty; give a description such as 'buildings'"
            )
        text = _check_text("--text", f"description {number}", raw, InputError)
        prompts.append(Prompt(id=f"p{number}", text=text))
    if not prompts:
        raise InputError("no descriptions given; pass --text or a description file")
    return prompts


def prompt_set_hash(prompts: list[Prompt]) -> str:
    """SHA-256 (hex) of the prompts' canonical JSON; order matters (it is the band order)."""
    canonical = json.dumps(
        [prompt.to_dict() for prompt in prompts],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- parsing: each parser returns (value, line, key_lines) per item ------------------------------

_Item = tuple[Any, int, dict[str, int]]


def _parse_text(text: str) -> list[_Item]:
    items: list[_Item] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            items.append((stripped, number, {}))
    return items


def _parse_yaml(path: Path, text: str) -> list[_Item]:
    try:
        root = strict_yaml.compose(text)
        data = None if root is None else strict_yaml.construct(root)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = clip(getattr(err, "problem", None) or str(err).splitlines()[0])
        kind = "refused" if isinstance(err, strict_yaml.StrictYAMLError) else "malformed"
        raise PromptFileError(f"{path} line {line}: {kind} YAML: {problem}") from err
    if root is None:
        return []
    node_list, values = _unwrap_yaml(path, root, data)
    items: list[_Item] = []
    for node, value in zip(node_list, values, strict=True):
        key_lines = {}
        if isinstance(node, yaml.MappingNode):
            key_lines = {str(key.value): key.start_mark.line + 1 for key, _ in node.value}
        items.append((value, node.start_mark.line + 1, key_lines))
    return items


def _unwrap_yaml(path: Path, root: yaml.Node, data: Any) -> tuple[list[yaml.Node], list[Any]]:
    """The list node and list value, from a top-level list or ``{prompts: [...]}``."""
    if isinstance(root, yaml.MappingNode) and isinstance(data, dict):
        _check_top_keys(path, data, root.start_mark.line + 1)
        for key, value in root.value:
            if key.value == "prompts":
                root = value
        data = data["prompts"]
    if not isinstance(root, yaml.SequenceNode) or not isinstance(data, list):
        raise PromptFileError(
            f"{path} line {root.start_mark.line + 1}: expected a list of prompts "
            "(or a mapping with a 'prompts' list)"
        )
    return list(root.value), data


def _check_top_keys(path: Path, data: dict[Any, Any], line: int) -> None:
    unknown = sorted(str(key) for key in data if key != "prompts")
    if unknown or "prompts" not in data:
        raise PromptFileError(
            f"{path} line {line}: top-level mapping must have exactly one key 'prompts'"
            + (f", found {clip(', '.join(unknown))}" if unknown else "")
        )


class _JSONRefused(ValueError):
    """A construct the description-file JSON reader refuses, at character ``position``."""

    def __init__(self, problem: str, position: int) -> None:
        super().__init__(problem)
        self.problem, self.position = problem, position


class _LineTrackingDecoder(json.JSONDecoder):
    """A JSON decoder that remembers where each array item starts (character offset), and
    refuses nesting deeper than :data:`strict_yaml.MAX_DEPTH` and duplicate keys."""

    def __init__(self) -> None:
        super().__init__()
        self.item_starts: dict[int, list[int]] = {}
        self.depth = 0
        self.parse_array = self._parse_array
        self.parse_object = self._parse_object
        # The C scanner ignores parse_array overrides; the pure-Python one (stable since Python
        # 2.6, undeclared in typeshed) honours them. Prompt files are small, so speed is moot.
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]

    def _enter(self, position: int) -> None:
        self.depth += 1
        if self.depth > strict_yaml.MAX_DEPTH:
            raise _JSONRefused(f"nested more than {strict_yaml.MAX_DEPTH} levels deep", position)

    def _parse_object(self, s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
        position = s_and_end[1]
        self._enter(position)

        def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for key, value in pairs:
                if key in result:
                    raise _JSONRefused(f"duplicate key {cut(key, 40)}; keep one", position)
                result[key] = value
            return result

        strict, scan_once, _, _, memo = args
        try:
            return json.decoder.JSONObject(  # type: ignore[attr-defined,no-any-return]
                s_and_end, strict, scan_once, None, unique, memo
            )
        finally:
            self.depth -= 1

    def _parse_array(self, s_and_end: tuple[str, int], scan_once: Any) -> tuple[list[Any], int]:
        self._enter(s_and_end[1])
        try:
            return self._parse_items(s_and_end, scan_once)
        finally:
            self.depth -= 1

    def _parse_items(self, s_and_end: tuple[str, int], scan_once: Any) -> tuple[list[Any], int]:
        starts: list[int] = []

        def scan_item(string: str, index: int) -> tuple[Any, int]:
            starts.append(index)
            return scan_once(string, index)

        values, end = json.decoder.JSONArray(s_and_end, scan_item)  # type: ignore[attr-defined]
        self.item_starts[id(values)] = starts
        return values, end


def _parse_json(path: Path, text: str) -> list[_Item]:
    decoder = _LineTrackingDecoder()
    try:
        data = decoder.decode(text) if text.strip() else None
    except json.JSONDecodeError as err:
        raise PromptFileError(f"{path} line {err.lineno}: malformed JSON: {err.msg}") from err
    except _JSONRefused as err:
        line = text.count("\n", 0, err.position) + 1
        raise PromptFileError(f"{path} line {line}: refused JSON: {err.problem}") from err
    if data is None:
        return []
    first = len(text) - len(text.lstrip())
    top_line = text.count("\n", 0, first) + 1
    if isinstance(data, dict):
        _check_top_keys(path, data, top_line)
        data = data["prompts"]
    if not isinstance(data, list):
        raise PromptFileError(
            f"{path} line {top_line}: expected a list of prompts "
            "(or an object with a 'prompts' list)"
        )
    starts = decoder.item_starts.get(id(data), [0] * len(data))
    return [
        (value, text.count("\n", 0, start) + 1, {})
        for value, start in zip(data, starts, strict=True)
    ]


# --- validation ---------------------------------------------------------------------------------


def _build(path: Path, items: list[_Item]) -> list[Prompt]:
    prompts: list[Prompt] = []
    first_line: dict[str, int] = {}
    for number, (value, line, key_lines) in enumerate(items, start=1):
        prompt = _item_to_prompt(path, number, value, line, key_lines)
        if prompt.id in first_line:
            raise PromptFileError(
                f"{path} line {line}: duplicate id '{prompt.id}' (first on line "
                f"{first_line[prompt.id]}); give each prompt a unique id"
            )
        first_line[prompt.id] = line
        prompts.append(prompt)
    return prompts


def _item_to_prompt(
    path: Path, number: int, value: Any, line: int, key_lines: dict[str, int]
) -> Prompt:
    where = f"{path} line {line}"
    if isinstance(value, str):
        value = {"text": value}
    if not isinstance(value, dict):
        raise PromptFileError(
            f"{where}: prompt {number} is a {type(value).__name__}; "
            "expected a text or a mapping with 'text' (and optional 'id', 'threshold')"
        )
    unknown = [str(key) for key in value if key not in _KEYS]
    if unknown:
        line = key_lines.get(unknown[0], line)
        raise PromptFileError(
            f"{path} line {line}: unknown key {cut(unknown[0], 40)} in prompt {number}; "
            f"valid keys: {', '.join(_KEYS)}"
        )
    if "text" not in value:
        raise PromptFileError(f"{where}: prompt {number} has no 'text'; add the description")
    text = _check_text(where, f"prompt {number}", value["text"], PromptFileError)
    return Prompt(
        id=_check_id(where, number, value.get("id")),
        text=text,
        threshold=_check_threshold(where, number, value.get("threshold")),
    )


def _check_id(where: str, number: int, raw: Any) -> str:
    if raw is None:
        return f"p{number}"
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise PromptFileError(
            f"{where}: id of prompt {number} must be a short name, got {cut(raw)}"
        )
    prompt_id = str(raw)
    if not _ID_PATTERN.fullmatch(prompt_id):
        raise PromptFileError(
            f"{where}: id {cut(prompt_id)} of prompt {number} is not a short name; use up to 64 "
            "letters, digits, '_', '.', '-' starting with a letter or digit, e.g. 'roads'"
        )
    return prompt_id


def _check_threshold(where: str, number: int, raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.0 < raw < 1.0:
        raise PromptFileError(
            f"{where}: threshold {cut(raw)} of prompt {number} is not a number in (0, 1); "
            "use e.g. 0.5"
        )
    return float(raw)


def _check_text(where: str, what: str, raw: Any, error: type[Exception]) -> str:
    """The normalised description ``raw``, or ``error`` saying why it is not one."""
    if raw is not None and not isinstance(raw, str):
        raise error(
            f"{where}: the text of {what} is a {type(raw).__name__} ({cut(raw, 40)}); "
            "write the description as one string"
        )
    text = _normalise(raw or "")
    if not text:
        raise error(f"{where}: {what} has an empty text; write a description")
    if len(text) > MAX_TEXT_CHARS:
        raise error(
            f"{where}: the text of {what} is {len(text)} characters, more than the "
            f"{MAX_TEXT_CHARS} allowed (the text encoder reads only its first 64-77 tokens); shorten it"
        )
    control = next((char for char in text if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        raise error(
            f"{where}: the text of {what} holds the control character {control!r}; "
            "is the file binary? Write plain text"
        )
    return text


def _normalise(text: str) -> str:
    return " ".join(text.split())
