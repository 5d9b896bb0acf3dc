"""A YAML loader for files users hand us: safe, and refusing what only an attack needs.

``yaml.safe_load`` runs no code, but it still expands aliases (a 352-byte "billion laughs" file
becomes hundreds of megabytes once anything walks it), recurses once per nesting level (a file of
``[[[[...`` raises RecursionError) and keeps the last of two equal keys without a word. Prompt
and config files need none of that, so :class:`StrictLoader` refuses anchors and aliases, nesting
deeper than :data:`MAX_DEPTH`, and duplicate keys, each as a :class:`StrictYAMLError` carrying the
line (a ``yaml.MarkedYAMLError``, so code that reports YAML errors with their line keeps working).
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "StrictLoader", "StrictYAMLError", "compose", "construct", "load"]

#: Nesting levels allowed; a prompt file needs 3, a training config 3.
MAX_DEPTH = 32


class StrictYAMLError(yaml.MarkedYAMLError):
    """A construct refused by :class:`StrictLoader`; ``problem_mark`` is where it starts."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without anchors, aliases, deep nesting or duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise StrictYAMLError(
                problem="anchors and aliases (&name, *name) are not allowed; write values out",
                problem_mark=event.start_mark,
            )
        if self._depth >= MAX_DEPTH:
            raise StrictYAMLError(
                problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=event.start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise StrictYAMLError(
                    problem=f"duplicate key {str(key)[:40]!r}; keep one",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def compose(text: str) -> yaml.Node | None:
    """The node tree of the single document in ``text`` (None when it is empty)."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def construct(node: yaml.Node) -> Any:
    """Python values of a node tree from :func:`compose`."""
    loader = StrictLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """``yaml.safe_load`` with the refusals of :class:`StrictLoader`.

    Raises:
        yaml.YAMLError: malformed YAML, or a refused construct (:class:`StrictYAMLError`).
    """
    node = compose(text)
    return None if node is None else construct(node)
