"""Reading YAML safely with line numbers, and `key.path=value` overrides of the plain tree.

Why ruamel's round-trip loader: it keeps the line of every key, so a pydantic error can be
turned back into `file:line: key:`. The tree is converted to plain dicts and lists here,
with caps on size and depth, and no tag other than YAML's plain ones is constructed.
"""

from __future__ import annotations

from typing import Any

from r1pipe.config.errors import ConfigError

LineMap = dict[tuple[str, ...], int]

# A pipeline file is a few hundred values. These caps refuse, in milliseconds, what would
# otherwise expand without bound: YAML aliases nested inside each other ("billion laughs": a
# 529-byte file that names 9^9 values) and lists nested thousands of levels deep.
MAX_YAML_VALUES = 20_000
MAX_YAML_DEPTH = 64
_PLAIN_TAGS = {None, "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _Budget:
    """Counts the values a YAML tree expands to while it is converted."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.values = 0

    def spend(self, path: tuple[str, ...], lines: LineMap) -> None:
        self.values += 1
        if self.values > MAX_YAML_VALUES:
            raise ConfigError(
                f"the file expands to more than {MAX_YAML_VALUES:,} values (YAML aliases "
                "nested inside each other?); write the values out or use fewer aliases",
                file=self.file, line=_nearest_line(path, lines))
        if len(path) > MAX_YAML_DEPTH:
            raise ConfigError(f"values are nested more than {MAX_YAML_DEPTH} levels deep",
                              file=self.file, line=_nearest_line(path, lines),
                              key=".".join(path[:4]) + ("..." if len(path) > 4 else ""))


def _nearest_line(path: tuple[str, ...], lines: LineMap) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _to_plain(node: Any, path: tuple[str, ...], lines: LineMap, budget: _Budget) -> Any:
    """ruamel's commented tree → plain dicts/lists, recording a 1-based line per key path.

    Aliases are expanded here (ruamel keeps them as shared nodes), so this is where the
    value and depth caps apply. Tags other than YAML's plain ones are refused: a pipeline
    holds strings, numbers, lists and mappings, and nothing else is constructed from it.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

    budget.spend(path, lines)
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, TaggedScalar) or (isinstance(node, (CommentedMap, CommentedSeq))
                                          and tag not in _PLAIN_TAGS):
        raise ConfigError(f"YAML tag {tag or node.tag!s} is not supported; write a plain "
                          "value, list or mapping", file=budget.file,
                          line=_nearest_line(path, lines), key=".".join(path) or None)
    if isinstance(node, CommentedMap):
        out = {}
        for key in node:
            if key is None or not isinstance(key, (str, int, float, bool)):
                line = node.lc.key(key)[0] + 1 if key in node.lc.data else None
                raise ConfigError(f"a key must be a name, not {key!r}",
                                  file=budget.file, line=line or _nearest_line(path, lines),
                                  key=".".join(path) or None)
            key_path = (*path, str(key))
            if key in node.lc.data:
                lines[key_path] = node.lc.key(key)[0] + 1
            elif path in lines:  # a key merged in by `<<: *anchor`: point at the merge
                lines[key_path] = lines[path]
            out[str(key)] = _to_plain(node[key], key_path, lines, budget)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, item in enumerate(node):
            position = node.lc.data[i] if i < len(node.lc.data or []) else None
            if position:
                lines[(*path, str(i))] = position[0] + 1
            items.append(_to_plain(item, (*path, str(i)), lines, budget))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    raise ConfigError(f"unsupported YAML value of type {type(node).__name__}", file=budget.file,
                      line=_nearest_line(path, lines), key=".".join(path) or None)


def _flow_depth(text: str) -> int:
    """How deeply `[` and `{` nest (quoted text aside): checked before parsing, because the
    YAML parser recurses once per level and a 5,000-deep list takes it seconds to refuse."""
    depth = deepest = 0
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "\n" and depth == 0:
            quote = ""
    return deepest


def parse_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse with ruamel's round-trip loader (it keeps line numbers), safely: no Python
    objects are built, and every parser failure becomes a `ConfigError` with a line."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.reader import ReaderError

    deepest = _flow_depth(text)
    if deepest > MAX_YAML_DEPTH:
        raise ConfigError(f"values are nested more than {MAX_YAML_DEPTH} levels deep "
                          f"({deepest} levels of [ or {{)", file=file,
                          line=text.count("\n", 0, text.find("[" * 8)) + 1
                          if "[" * 8 in text else None)
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc.context}", file=file,
                          line=line) from None
    except ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError(f"character {exc.character!r} is not allowed in YAML (control "
                          "characters and NUL bytes are refused); remove it", file=file,
                          line=line) from None
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError(f"values are nested more than {MAX_YAML_DEPTH} levels deep",
                          file=file) from None
    lines: LineMap = {}
    return _to_plain(tree, (), lines, _Budget(file)), lines


def parse_override(text: str) -> tuple[list[str], Any]:
    """`stages.r1_zero.trainer.learning_rate=1e-6` → (path, value parsed as YAML).

    Every refusal quotes the override as typed: with several on the command line, "invalid
    YAML on line 1" would not say which one, and a key with an empty part
    (`stages..r1_zero`) must not quietly become another key."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value",
                          file="<command line>")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not any(path):
        raise ConfigError(f"override {text!r} has an empty key", file="<command line>")
    if not all(path):
        fixed = ".".join(p for p in path if p)
        raise ConfigError(f"override {text!r}: the key has an empty part (two dots in a row, "
                          f"or a dot at an end); write {fixed}={raw}", file="<command line>")
    try:
        value, _ = parse_yaml(raw, "<command line>") if raw.strip() else (None, {})
    except ConfigError as exc:
        quoted = raw.replace("'", "''")
        raise ConfigError(f"override {text!r}: {exc.message}; if the value is text, quote it "
                          f"for YAML: \"{key}='{quoted}'\"", file="<command line>") from None
    return path, value


def apply_override(tree: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `value` at `path` in the parsed YAML tree, creating mappings on the way; a path
    through a value that is neither a mapping nor a list index is refused, naming the key."""
    node: Any = tree
    for i, part in enumerate(path):
        last = i == len(path) - 1
        here = ".".join(path[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{here} is not an index of the list at "
                                  f"{'.'.join(path[:i])} (it has {len(node)} items)",
                                  file="<command line override>", key=".".join(path))
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path[:i])} holds {type(node).__name__} "
                              f"{node!r}, not a mapping, so it has no key {part!r}",
                              file="<command line override>", key=".".join(path))
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
