"""Description files: the three formats, the generated ids, and one clear error per mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffris.data.prompts import (
    MAX_FILE_BYTES,
    Prompt,
    load_prompts,
    prompt_set_hash,
    prompts_from_texts,
)
from diffris.errors import InputError, InputNotFoundError, PromptFileError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- formats ------------------------------------------------------------------------------------


def test_yaml_list_of_mappings_and_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prompts.yaml",
        "- id: roads\n  text: the highway in the north\n  threshold: 0.4\n"
        "- buildings near the highway\n"
        "- text: >\n    small   boats\n    in the harbour\n",
    )
    assert load_prompts(path) == [
        Prompt("roads", "the highway in the north", 0.4),
        Prompt("p2", "buildings near the highway", None),
        Prompt("p3", "small boats in the harbour", None),
    ]


def test_yaml_prompts_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yml", "prompts:\n  - {id: a, text: lakes}\n  - rivers\n")
    assert load_prompts(path) == [Prompt("a", "lakes"), Prompt("p2", "rivers")]


def test_json_formats(tmp_path: Path) -> None:
    items = [{"id": "w", "text": "water", "threshold": 0.7}, "bare soil"]
    listed = write(tmp_path, "a.json", json.dumps(items))
    wrapped = write(tmp_path, "b.json", json.dumps({"prompts": items}, indent=2))
    expected = [Prompt("w", "water", 0.7), Prompt("p2", "bare soil")]
    assert load_prompts(listed) == expected
    assert load_prompts(wrapped) == expected


def test_text_format_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prompts.txt",
        "# buildings first\n\nbuildings near the highway\n   \n  # indented comment\n"
        "tank #3 by the river\n",
    )
    assert load_prompts(path) == [
        Prompt("p1", "buildings near the highway"),
        Prompt("p2", "tank #3 by the river"),
    ]


def test_utf8_bom_and_unicode(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeffbâtiments près de l'autoroute\n".encode())
    assert load_prompts(path)[0].text == "bâtiments près de l'autoroute"


def test_a_100_word_prompt_passes_through(tmp_path: Path) -> None:
    words = " ".join(f"word{i}" for i in range(100))
    for name, body in (
        ("long.txt", words + "\n"),
        ("long.yaml", f"- text: {words}\n"),
        ("long.json", json.dumps([words])),
    ):
        (prompt,) = load_prompts(write(tmp_path, name, body))
        assert prompt.text == words


def test_integer_ids_are_accepted_as_text(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "- {id: 7, text: roads}\n")
    assert load_prompts(path) == [Prompt("7", "roads")]


def test_prompts_from_texts() -> None:
    assert prompts_from_texts(["roads", "  lakes\tand  ponds "]) == [
        Prompt("p1", "roads"),
        Prompt("p2", "lakes and ponds"),
    ]
    with pytest.raises(InputError, match="--text number 2 is empty"):
        prompts_from_texts(["roads", "  "])
    with pytest.raises(InputError, match="no descriptions"):
        prompts_from_texts([])


def test_prompt_set_hash_is_canonical_and_order_sensitive() -> None:
    a, b = Prompt("a", "roads", 0.5), Prompt("b", "lakes")
    assert prompt_set_hash([a, b]) == prompt_set_hash([Prompt("a", "roads", 0.5), b])
    assert len(prompt_set_hash([a, b])) == 64
    assert prompt_set_hash([a, b]) != prompt_set_hash([b, a])
    assert prompt_set_hash([a]) != prompt_set_hash([Prompt("a", "roads", 0.6)])


# --- errors: one line, the file and the line --------------------------------------------------


def load_error(path: Path) -> str:
    with pytest.raises(PromptFileError) as info:
        load_prompts(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    ("name", "body"),
    [("e.txt", ""), ("e.txt", "# only a comment\n\n"), ("e.yaml", "\n"), ("e.json", "  \n")],
)
def test_empty_files(tmp_path: Path, name: str, body: str) -> None:
    assert "no prompts" in load_error(write(tmp_path, name, body))


def test_empty_list(tmp_path: Path) -> None:
    assert "no prompts" in load_error(write(tmp_path, "e.json", "[]"))


def test_malformed_yaml_names_the_parser_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "- text: roads\n- text: [unclosed\n- text: lakes\n")
    assert f"{path} line 3: malformed YAML" in load_error(path)


def test_malformed_json_names_the_parser_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '[\n  "roads",\n  "lakes"\n  "rivers"\n]\n')
    assert f"{path} line 4: malformed JSON" in load_error(path)


def test_missing_text(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "- text: roads\n- id: lakes\n  threshold: 0.3\n")
    assert f"{path} line 2: prompt 2 has no 'text'" in load_error(path)


def test_missing_text_json_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", '[\n  {"text": "roads"},\n\n  {"id": "x"}\n]')
    assert f"{path} line 4: prompt 2 has no 'text'" in load_error(path)


def test_unknown_key_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "- id: roads\n  txt: the highway\n")
    message = load_error(path)
    assert f"{path} line 2: unknown key 'txt'" in message
    assert "valid keys: id, text, threshold" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", '{"prompts": ["a"], "model": "x"}')
    assert "found model" in load_error(path)


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        "- {id: roads, text: a}\n- {id: lakes, text: b}\n- {id: roads, text: c}\n",
    )
    assert f"{path} line 3: duplicate id 'roads' (first on line 1)" in load_error(path)


def test_explicit_id_colliding_with_a_generated_one(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", '["roads",\n {"id": "p1", "text": "lakes"}]')
    assert "line 2: duplicate id 'p1' (first on line 1)" in load_error(path)


@pytest.mark.parametrize("text", ['""', '"   "', "null"])
def test_empty_text(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "p.yaml", f"- text: roads\n- text: {text}\n")
    assert f"{path} line 2: prompt 2 has an empty text" in load_error(path)


@pytest.mark.parametrize(
    ("text", "kind"), [("3", "int"), ("[roads, lakes]", "list"), ("{a: b}", "dict")]
)
def test_a_text_that_is_not_a_string_is_named_as_such(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, "p.yaml", f"- text: roads\n- text: {text}\n")
    message = load_error(path)
    assert f"{path} line 2: the text of prompt 2 is a {kind}" in message
    assert "empty" not in message


@pytest.mark.parametrize("threshold", ["0", "1", "1.5", "-0.2", "true", "'0.5'"])
def test_threshold_outside_open_unit_interval(tmp_path: Path, threshold: str) -> None:
    path = write(tmp_path, "p.yaml", f"- text: roads\n  threshold: {threshold}\n")
    message = load_error(path)
    assert f"{path} line 1: threshold" in message
    assert "(0, 1)" in message


def test_bad_id(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "- {id: 'two words', text: roads}\n")
    assert "is not a short name" in load_error(path)


def test_item_of_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "- roads\n- [a, b]\n")
    assert f"{path} line 2: prompt 2 is a list" in load_error(path)


def test_top_level_not_a_list(tmp_path: Path) -> None:
    assert "expected a list" in load_error(write(tmp_path, "p.yaml", "just a string\n"))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"roads\nb\xe2timents\n")
    assert f"{path} line 2: not UTF-8" in load_error(path)


def test_too_large(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "roads\n" * (MAX_FILE_BYTES // 6 + 1))
    assert "more than" in load_error(path)


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "- !!python/object/apply:os.system ['echo hi']\n")
    assert "malformed YAML" in load_error(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="not found"):
        load_prompts(tmp_path / "nope.yaml")
