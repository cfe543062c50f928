"""Safe YAML reading that remembers where each key was, so errors can name the line.

PyYAML's SafeLoader builds only plain types (no arbitrary objects). On top of it we refuse
duplicate keys, which PyYAML would otherwise resolve silently by keeping the last one.

Documents are composed with libyaml (``CSafeLoader``) when PyYAML was built with it: the DAG
factory parses every definition on each scan of the DAGs folder, and the pure-Python parser was
half of that time. A document libyaml refuses is composed again by the pure-Python parser, so a
broken file is reported with the same message either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from airflow_provider_contactsync.core.errors import DefinitionError

KeyPath = tuple[str | int, ...]

_FastLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"

PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
)


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


def parse_yaml(text: str, *, file: str) -> YamlDocument:
    """Parse one YAML document safely, recording key lines; errors name the file and line."""
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(
            f"not valid YAML: {problem}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    if node is None:
        raise DefinitionError("the file is empty", file=file)
    document = YamlDocument(data=None)
    document.data = _Builder(document, file).build(node, ())
    return document


def _compose(text: str) -> yaml.Node | None:
    """Compose with libyaml; on a syntax error, let the pure-Python parser word the problem."""
    if _FastLoader is not yaml.SafeLoader:
        try:
            return yaml.compose(text, Loader=_FastLoader)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


class _Builder:
    """Turns composed YAML nodes into plain data, recording each key's line."""

    def __init__(self, document: YamlDocument, file: str) -> None:
        self.document = document
        self.file = file
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        document, file = self.document, self.file
        document.lines.setdefault(path, node.start_mark.line + 1)
        if node.tag not in PLAIN_TAGS:
            raise DefinitionError(
                f"YAML tag {node.tag!r} is not allowed: definitions hold plain data only",
                file=file,
                key_path=dotted(path) or None,
                line=node.start_mark.line + 1,
            )
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise DefinitionError("keys must be plain scalars", file=file, line=key_node.start_mark.line + 1)
                key = self.scalar(key_node)
                if key in result:
                    raise DefinitionError(
                        f"key {key!r} appears twice",
                        file=file,
                        key_path=dotted(path + (str(key),)),
                        line=key_node.start_mark.line + 1,
                    )
                child = path + (str(key),)
                document.lines[child] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        if node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):
            return node.value  # what SafeConstructor returns for str, without its dispatch
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise DefinitionError(f"bad value: {exc}", file=self.file, line=node.start_mark.line + 1) from None


def dotted(path: KeyPath) -> str:
    """``("source", "fields", 2)`` -> ``source.fields[2]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
