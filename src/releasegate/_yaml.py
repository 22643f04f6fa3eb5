"""YAML loading that remembers where every key was written.

PyYAML drops line numbers when it builds Python objects and silently keeps the last of two
duplicate keys. Configuration errors must name file:line, so we compose the node tree
ourselves and record the line of every mapping key and sequence item by its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from releasegate._exceptions import ConfigError, Problem

YamlPath = tuple[str | int, ...]

# Aliases are expanded by copying, so a hostile file ("billion laughs") could grow without
# bound; no real configuration comes near this many values.
MAX_VALUES = 100_000

# PyYAML's constructors raise plain ValueError for a value that only looks valid, such as the
# timestamp 2026-13-01 (month 13); that is the user's mistake, not a crash.
_CONSTRUCT_ERRORS = (yaml.YAMLError, ValueError, OverflowError)
_PLAIN_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class LineIndex:
    """Path (keys and list indexes) -> 1-based line number."""

    def __init__(self, lines: dict[YamlPath, int]) -> None:
        self._lines = lines

    def line(self, path: YamlPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get((), None)


def dotted(path: YamlPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: Path) -> tuple[Any, LineIndex]:
    """Parse ``path``; raise :class:`ConfigError` for unreadable files, syntax errors and duplicate keys."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(shown, None, "", "file not found", "check the path or create the file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(shown, None, "", f"cannot read file ({exc})", "make it a readable UTF-8 file")]) from None
    return load_yaml_text(text, shown)


def load_yaml_text(text: str, shown: str) -> tuple[Any, LineIndex]:
    try:
        # The reader checks the characters already here: a NUL or other control character raises ReaderError.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(shown, None, "", f"YAML error: {exc}", "remove control characters (NUL, ...) from the file")]) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        raise ConfigError([Problem(shown, line, "", f"YAML syntax error: {problem}", "fix the YAML syntax at that line")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(shown, None, "", f"YAML error: {exc}", "fix the YAML syntax")]) from None
    except RecursionError:
        raise ConfigError([Problem(shown, None, "", "YAML nested too deeply", "flatten the file")]) from None
    finally:
        loader.dispose()
    if node is None:
        return None, LineIndex({})
    lines: dict[YamlPath, int] = {(): node.start_mark.line + 1}
    problems: list[Problem] = []
    try:
        value = _build(node, (), lines, problems, loader, shown)
    except RecursionError:
        raise ConfigError([Problem(shown, None, "", "YAML nested too deeply", "flatten the file")]) from None
    if problems:
        raise ConfigError(problems)
    return value, LineIndex(lines)


def _build(
    node: yaml.Node,
    path: YamlPath,
    lines: dict[YamlPath, int],
    problems: list[Problem],
    loader: yaml.SafeLoader,
    shown: str,
) -> Any:
    if len(lines) > MAX_VALUES:
        raise ConfigError(
            [
                Problem(
                    shown,
                    node.start_mark.line + 1,
                    dotted(path),
                    f"more than {MAX_VALUES} values (alias expansion?)",
                    "write a smaller file",
                )
            ]
        )
    if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
        # Mappings and lists are built here, not by PyYAML's constructors, so a tag on one
        # (!!python/object:..., !!set, !!omap, !custom) would be silently dropped: say so instead.
        problems.append(
            Problem(
                shown,
                node.start_mark.line + 1,
                dotted(path),
                f"tag {node.tag} is not supported",
                "remove the tag: write plain mappings and lists",
            )
        )
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(
                    Problem(shown, key_node.start_mark.line + 1, dotted(path), "a key must be a plain value", "write the key as text")
                )
                continue
            # Before constructing: SafeLoader has no constructor for a bare merge key.
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(
                    Problem(shown, key_node.start_mark.line + 1, dotted(path), "merge keys (<<) are not supported", "write the keys out")
                )
                continue
            try:
                key = loader.construct_object(key_node)
            except _CONSTRUCT_ERRORS as exc:
                problems.append(
                    Problem(shown, key_node.start_mark.line + 1, dotted(path), f"invalid key ({exc})", "write the key as plain text")
                )
                continue
            child = (*path, str(key))
            if key in result:
                problems.append(
                    Problem(
                        shown,
                        key_node.start_mark.line + 1,
                        dotted(child),
                        "duplicate key (YAML would silently keep only the last one)",
                        "remove one of the two",
                    )
                )
                continue
            lines[child] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, lines, problems, loader, shown)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            items.append(_build(item, child, lines, problems, loader, shown))
        return items
    try:
        return loader.construct_object(node, deep=True)
    except _CONSTRUCT_ERRORS as exc:
        problems.append(Problem(shown, node.start_mark.line + 1, dotted(path), f"invalid value ({exc})", "write a plain value"))
        return None
