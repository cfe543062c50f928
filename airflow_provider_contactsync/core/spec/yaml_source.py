"""Safe, bounded YAML reading that remembers where each key was, so errors can name the line.

Only plain data is built (mappings, lists, strings, numbers, booleans, null, dates): YAML tags are
refused, and so are duplicate keys, which PyYAML would otherwise resolve silently by keeping the
last one, and control characters (a NUL byte written ``"\\0"``) in any string.

Reading is bounded before anything expands (:mod:`.limits`): the file's size is checked first;
composing the node graph is linear in the text whatever its aliases (an alias is the anchored node
again, not a copy); then, while plain data is built from the graph, values are counted as they are
visited (an alias counts as every value it stands for), nesting is bounded and an alias met inside
its own anchor is refused. A "billion laughs" file of a few hundred bytes stops at the values
limit instead of filling memory, and a 10,000-deep file at the depth limit instead of overflowing
the stack. Everything that walks the data afterwards (the credential scan, the schema) sees at
most that many values.

Documents are composed with libyaml (``CSafeLoader``) when PyYAML was built with it: the DAG
factory parses every definition on each scan of the DAGs folder, and the pure-Python parser was
half of that time. A document libyaml refuses is composed again by the pure-Python parser, so a
broken file is reported with the same message either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import MappingEndEvent, MappingStartEvent, SequenceEndEvent, SequenceStartEvent

from airflow_provider_contactsync.core.errors import DefinitionError
from airflow_provider_contactsync.core.spec.limits import (
    DEFINITION_SIZE,
    EXPANDED_TEXT_FACTOR,
    YAML_DEPTH,
    YAML_VALUES,
)

KeyPath = tuple[str | int, ...]

_FastLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"

PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")
"""Control characters other than tab, line breaks and NEL: only reachable through escapes in
double-quoted strings (the YAML reader refuses them raw). A NUL byte cuts a path or a connection id
short, and PostgreSQL refuses it in text, so the Airflow metadata database would refuse the DAG."""


@dataclass
class YamlDocument:
    """The parsed data and the 1-based line of every key path in it."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """Line of the deepest known prefix of ``path`` (pydantic locations can go deeper than keys)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def parse_yaml(text: str, *, file: str, lenient: bool = False) -> YamlDocument:
    """Parse one YAML document safely and within :mod:`.limits`, recording key lines.

    Errors name the file, the line and, past the syntax, the key path and the limit.
    ``lenient`` keeps the last of duplicate keys instead of refusing them (for guessing the DAG id
    of a broken file); every limit still applies.
    """
    check_size(len(text), file=file, text=text)
    node = _compose(text, file)
    if node is None:
        raise DefinitionError("the file is empty", file=file)
    builder = _Builder(file, lenient)
    builder.document.data = builder.build(node, (), 0)
    return builder.document


def check_size(size: int, *, file: str, text: str | None = None, truncated: bool = False) -> None:
    """Refuse a file over the size limit: ``size`` in bytes, or the characters of ``text``.

    ``truncated``: ``size`` is what was read of a file read only up to just past the limit.
    """
    limit = DEFINITION_SIZE.value * 1024
    if size <= limit // 4:
        return  # even at four bytes a character it would fit
    if text is not None:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        what = "larger than" if truncated else f"{size / 1024:,.0f} kB, over"
        raise DefinitionError(
            f"the file is {what} the limit of {DEFINITION_SIZE.value:,} kB for a definition ({DEFINITION_SIZE.env}): "
            f"{DEFINITION_SIZE.raise_hint()}",
            file=file,
        )


def _compose(text: str, file: str) -> yaml.Node | None:
    """The node graph, composed by libyaml; on a document libyaml refuses, by the pure-Python parser.

    Composing is linear in the text whatever its aliases (an alias is the anchored node again) and
    libyaml refuses nesting over 1,000 levels. The pure-Python composer is recursive, so its events
    are read first (the parser itself is not): deeper than the limit is refused before composing.
    The pure-Python parser words syntax errors, with the same message either way.
    """
    if _FastLoader is not yaml.SafeLoader:
        try:
            return yaml.compose(text, Loader=_FastLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            if "maximum nesting depth" in str(getattr(exc, "problem", "")) and mark is not None:
                # over libyaml's 1,000 levels, so over ours: no need for the slow parser to say so
                raise DefinitionError(_depth_message(), file=file, file_line=mark.line + 1) from None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (SequenceStartEvent, MappingStartEvent)):
                depth += 1
                if depth > YAML_DEPTH.value:
                    raise DefinitionError(_depth_message(), file=file, file_line=event.start_mark.line + 1)
            elif isinstance(event, (SequenceEndEvent, MappingEndEvent)):
                depth -= 1
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow in a file (raw NUL, ESC)
        line, column = _position(text, exc.position)
        char = exc.character
        what = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        raise DefinitionError(
            f"not valid YAML: the character {what} cannot be written in a YAML file",
            file=file,
            line=line,
            column=column,
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(
            f"not valid YAML: {problem}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character index."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _depth_message() -> str:
    return f"nested deeper than {YAML_DEPTH.value} levels, the limit for a definition: {YAML_DEPTH.raise_hint()}"


class _Builder:
    """Turns composed YAML nodes into plain data, recording each key's line, within the limits.

    An alias is the anchored node met again: it is built again where it is used (so its keys get
    lines there too), and counted as the values it stands for. Counting happens as nodes are
    visited, so the work done is bounded by the values limit whatever the aliases would expand to.
    """

    def __init__(self, file: str, lenient: bool = False) -> None:
        self.document = YamlDocument(data=None)
        self.file = file
        self.lenient = lenient
        self.constructor = yaml.constructor.SafeConstructor()
        self.values = 0
        self.max_values = YAML_VALUES.value
        self.chars = 0  # characters of the strings built, aliases counted where they are used
        self.max_chars = EXPANDED_TEXT_FACTOR * DEFINITION_SIZE.value * 1024
        self.max_depth = YAML_DEPTH.value
        self.aliases = 0
        self.seen: set[int] = set()  # nodes built once: meeting one again is an alias
        self.open: set[int] = set()  # collections being built: meeting one of these is a recursive alias
        self.alias_line: int | None = None  # inside an alias: the line that uses it, for errors

    def build(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        line = node.start_mark.line + 1
        self.document.lines.setdefault(path, line)
        self.values += 1
        if self.values > self.max_values:
            self.too_many_values(path, line)
        if type(node) is yaml.ScalarNode:
            return self.scalar(node, path, line)  # an alias to a scalar costs one value, like the scalar
        node_id = id(node)
        outermost_alias = False
        if node_id in self.seen:
            if node_id in self.open:
                self.fail("recursive alias: it stands for a value that contains it", path, line)
            self.aliases += 1
            if self.alias_line is None:
                self.alias_line, outermost_alias = self.path_line(path, line), True
        self.seen.add(node_id)
        if node.tag not in PLAIN_TAGS:
            self.refuse_tag(node.tag, path, line)
        if depth >= self.max_depth:
            self.fail(_depth_message(), path, line)
        self.open.add(node_id)
        if type(node) is yaml.MappingNode:
            result: Any = self.mapping(node, path, depth + 1)
        else:
            result = [self.build(item, path + (index,), depth + 1) for index, item in enumerate(node.value)]
        self.open.discard(node_id)
        if outermost_alias:
            self.alias_line = None
        return result

    def path_line(self, path: KeyPath, line: int) -> int:
        """The line where an alias at ``path`` is used (its node's own line is the anchor's).

        A mapping value's line is its key's; the graph does not keep where an item of a list is an
        alias, so that is the line of the list's key. It becomes the alias's line for later errors too.
        """
        lines = self.document.lines
        if path and isinstance(path[-1], int):
            lines[path] = lines.get(path[:-1], line)
        return lines.get(path, line)

    def mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[Any, Any]:
        lines = self.document.lines
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if type(key_node) is not yaml.ScalarNode:
                self.fail("keys must be plain scalars", path, key_line)
            self.values += 1
            if self.values > self.max_values:
                self.too_many_values(path, key_line)
            key = self.scalar(key_node, path, key_line)
            child = path + (str(key),)
            if key in result and not self.lenient:
                self.fail(f"key {key!r} appears twice", child, key_line)
            lines[child] = key_line
            result[key] = self.build(value_node, child, depth)
        return result

    def scalar(self, node: yaml.ScalarNode, path: KeyPath, line: int) -> Any:
        tag = node.tag
        self.chars += len(node.value)
        if self.chars > self.max_chars:
            self.fail(
                f"more than {self.max_chars // 1024:,} kB of text after alias expansion ({EXPANDED_TEXT_FACTOR} times "
                f"the size limit, {DEFINITION_SIZE.env}): {DEFINITION_SIZE.raise_hint()}",
                path,
                line,
            )
        if tag == _STR_TAG:
            value = node.value  # what SafeConstructor returns for str, without its dispatch
            if _CONTROL.search(value):
                self.fail(_control_message(value), path, line)
            return value
        if tag not in PLAIN_TAGS:
            self.refuse_tag(tag, path, line)
        try:
            return self.constructor.yaml_constructors[node.tag](self.constructor, node)
        except Exception as exc:  # a scalar its tag's constructor cannot read: !!int "x", 5,000 digits
            digits = sum(c.isdigit() for c in node.value)
            why = f"a number of {digits:,} digits is too large" if digits > 1000 else f"not a valid {node.tag[18:]}"
            self.fail(f"bad value {_short(node.value)}: {why} ({type(exc).__name__})", path, line)

    def too_many_values(self, path: KeyPath, line: int) -> None:
        expanded = " after alias expansion" if self.aliases else ""
        self.fail(
            f"more than {self.max_values:,} values{expanded}, the limit for a definition "
            f"({YAML_VALUES.env}): {YAML_VALUES.raise_hint()}",
            path,
            line,
        )

    def refuse_tag(self, tag: str, path: KeyPath, line: int) -> None:
        if tag == _MERGE_TAG:
            self.fail("merge keys (<<) are not allowed: write the keys out", path, line)
        self.fail(f"YAML tag {tag!r} is not allowed: definitions hold plain data only", path, line)

    def fail(self, message: str, path: KeyPath, line: int) -> Any:
        """Raise, naming the key path and its line (for a value reached through an alias, the alias's line)."""
        line = self.alias_line or line
        raise DefinitionError(message, file=self.file, key_path=dotted(path) or None, file_line=line)


def _control_message(value: str) -> str:
    char = _CONTROL.search(value).group()  # type: ignore[union-attr]
    name = "a NUL character (U+0000)" if char == "\x00" else f"the control character U+{ord(char):04X}"
    return f"{_short(value)} contains {name}: control characters are not allowed in definitions"


def _short(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def dotted(path: KeyPath) -> str:
    """``("source", "fields", 2)`` -> ``source.fields[2]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
