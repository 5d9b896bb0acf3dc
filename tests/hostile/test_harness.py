"""The harness itself catches what it is for: a traceback, two lines, a changed file."""

import pytest

from tests.hostile.harness import assert_one_clear_line, assert_unchanged, run_cli, snapshot


def test_a_missing_scene_is_one_clear_line_and_touches_nothing(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    before = snapshot(tmp_path)
    out = tmp_path / "out.tif"
    result = run_cli(["segment", tmp_path / "nope.tif", "-t", "x", "-o", out, "--model", "tiny"])
    assert_one_clear_line(result, "nope.tif")
    assert_unchanged(before, tmp_path)


def test_the_harness_sees_a_changed_file(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    before = snapshot(tmp_path)
    keep.write_text("")
    with pytest.raises(AssertionError, match="changed"):
        assert_unchanged(before, tmp_path)
