"""The YAML loader: YAML 1.2 scalars, positions, duplicate keys, tags, limits."""

from __future__ import annotations

import math

import pytest

from gstc.errors import SpecErrors
from gstc.load import MAX_BYTES, load_file, load_text, parse_scalar


def one_error(text: str) -> str:
    with pytest.raises(SpecErrors) as info:
        load_text(text, "f.yaml")
    (error,) = info.value.errors
    return error.format()


@pytest.mark.parametrize(
    "text, value",
    [
        ("no", "no"), ("off", "off"), ("yes", "yes"), ("y", "y"), ("On", "On"),  # YAML 1.1 booleans stay strings
        ("true", True), ("False", False), ("~", None), ("null", None), ("", None),
        ("1e-4", 1e-4), ("0.001", 0.001), ("7", 7), ("-3", -3), ("0o17", 15), ("0x1f", 31), ("0755", 755),
        ("1:30", "1:30"), ("3.0", 3.0), ("'5'", "5"), ("[S, L]", ["S", "L"]), ("{a: 1}", {"a": 1}),
        ("!!str 5", "5"), ("!!int '5'", 5),
    ],
)
def test_scalars_resolve_by_the_yaml_1_2_core_schema(text, value):
    assert parse_scalar(text) == value
    assert type(parse_scalar(text)) is type(value)


def test_special_floats():
    assert parse_scalar(".inf") == math.inf and parse_scalar("-.inf") == -math.inf
    assert math.isnan(parse_scalar(".nan"))


def test_positions_of_values_and_keys():
    doc = load_text("a:\n  b: [1, {c: 2}]\n  d: x\n", "f.yaml")
    assert doc.positions[("a", "b", 1, "c")] == (2, 14)  # 1-based column of the 2
    assert doc.key_positions[("a", "d")] == (3, 3)
    assert doc.positions[("a", "d")] == (3, 6)
    # a path below a scalar falls back to its nearest existing ancestor
    assert doc.where(("a", "d", "zzz")) == (3, 6)


def test_merge_keys_work_and_explicit_keys_win():
    doc = load_text("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert doc.data["use"] == {"x": 1, "y": 3}
    assert doc.positions[("use", "y")] == (4, 6)
    assert doc.positions[("use",)] == (3, 3)


def test_duplicate_keys_are_errors():
    assert one_error("a: 1\nb: 2\na: 3\n").startswith("f.yaml:3:1: error: a: duplicate key 'a' (first defined at line 1)")


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system [ls]", "a: !custom 3", "a: !!set {x}", "a: !!binary aGk="])
def test_tags_that_construct_objects_are_refused(text):
    assert "is not allowed" in one_error(text)


def test_alias_bomb_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert "more than 100,000 values" in one_error("\n".join(lines))


def test_recursive_alias_is_bounded():
    assert "nested more than" in one_error("a: &a [*a]")


def test_deep_nesting_is_bounded():
    assert "nested more than" in one_error("[" * 40 + "]" * 40)
    assert "nested more than" in one_error("[" * 5000)  # deeper than Python's recursion limit


def test_size_limit(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * MAX_BYTES + "\n")
    with pytest.raises(SpecErrors, match="over the 1024 KiB limit"):
        load_file(path)


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(SpecErrors, match="cannot read the file"):
        load_file(tmp_path / "missing.yaml")
    with pytest.raises(SpecErrors, match="cannot read the file"):
        load_file(tmp_path)  # a folder
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(SpecErrors, match=r"latin1.yaml:2:1: error: the file is not UTF-8"):
        load_file(bad)


def test_syntax_errors_carry_the_line():
    assert one_error("a: [1, 2\nb: 3\n").startswith("f.yaml:2:")
    assert "quote keys" in one_error("v: {prune.layers[0].amount: 0.5}\n")


def test_empty_file():
    assert "the file is empty" in one_error("# only a comment\n")
