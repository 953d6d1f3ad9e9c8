"""
A YAML file as a tree of nodes that remember their line.

pyyaml composes the file (its SafeLoader, libyaml when present); we keep the
composed nodes' marks and read scalars by the field's declared type later
(L{tau.project.fields}), as Go's yaml.v3 does for Taubyte: a plain C{yes} is
a string in a string field, C{123} is the text C{"123"} in a string field.

Aliases are followed (each composed node converted once, so an alias bomb
costs nothing); an alias that contains itself is refused; so are duplicate
keys, which yaml.v3 refuses and pyyaml would silently let the last one win.
"""

import yaml

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pyyaml without libyaml
    _Loader = yaml.SafeLoader


class YamlError(ValueError):
    """
    A file that is not a usable YAML document; C{line} says where.
    """

    def __init__(self, line, message):
        super().__init__(message)
        self.line = line
        self.message = message


class Scalar:
    """
    A scalar as written: C{text} and whether it was C{plain} (unquoted, so
    YAML may read it as a null, bool or number).
    """

    __slots__ = ("line", "text", "plain")

    def __init__(self, line, text, plain):
        self.line = line
        self.text = text
        self.plain = plain


class Sequence:
    __slots__ = ("line", "items")

    def __init__(self, line, items):
        self.line = line
        self.items = items


class Mapping:
    """
    A mapping: C{entries} maps each key (text) to C{(keyLine, node)}; C{line}
    is the line of the key that holds this mapping (1 for a document).
    """

    __slots__ = ("line", "entries")

    def __init__(self, line, entries):
        self.line = line
        self.entries = entries

    def get(self, key):
        entry = self.entries.get(key)
        return None if entry is None else entry[1]

    def keyLine(self, key):
        return self.entries[key][0]


def describe(node):
    """
    What a node is, for a message: C{a mapping}, C{a list}, C{a string}...
    """
    if isinstance(node, Mapping):
        return "a mapping"
    if isinstance(node, Sequence):
        return "a list"
    return "a scalar"


def parse(text):
    """
    Compose one YAML document into nodes.

    @return: the root node, or C{None} for an empty document.
    @raise YamlError: on a syntax error, a duplicate key or a recursive alias.
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(p for p in (e.context, e.problem) if p)
        raise YamlError(mark.line + 1 if mark else 1, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as e:
        raise YamlError(1, f"YAML error: {e}") from None
    if root is None:
        return None
    return _Converter().convert(root, 1)


class _Converter:
    def __init__(self):
        self.done = {}
        self.active = set()

    def convert(self, node, keyLine):
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            raise YamlError(node.start_mark.line + 1, "YAML alias refers to itself (a cyclic reference)")
        self.active.add(key)
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            # libyaml marks a plain scalar with style "", pure pyyaml with None.
            result = Scalar(line, node.value, not node.style)
        elif isinstance(node, yaml.SequenceNode):
            result = Sequence(line, [self.convert(item, item.start_mark.line + 1) for item in node.value])
        else:
            result = self._mapping(node, keyLine)
        self.active.discard(key)
        self.done[key] = result
        return result

    def _mapping(self, node, keyLine):
        entries = {}
        for keyNode, valueNode in self._pairs(node):
            if not isinstance(keyNode, yaml.ScalarNode):
                raise YamlError(keyNode.start_mark.line + 1, "YAML mapping keys must be scalars")
            line = keyNode.start_mark.line + 1
            if keyNode.value in entries:
                raise YamlError(line, f"YAML key {keyNode.value!r} already defined at line {entries[keyNode.value][0]}")
            entries[keyNode.value] = (line, self.convert(valueNode, line))
        return Mapping(keyLine, entries)

    def _pairs(self, node):
        """
        The mapping's pairs with C{<<} merge keys expanded (own keys win).
        """
        own = []
        merged = []
        for keyNode, valueNode in node.value:
            if keyNode.tag == "tag:yaml.org,2002:merge":
                sources = valueNode.value if isinstance(valueNode, yaml.SequenceNode) else [valueNode]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise YamlError(source.start_mark.line + 1, "YAML merge key needs a mapping")
                    if id(source) in self.active or source is node:
                        raise YamlError(source.start_mark.line + 1, "YAML alias refers to itself (a cyclic reference)")
                    self.active.add(id(source))
                    merged.extend(self._pairs(source))
                    self.active.discard(id(source))
            else:
                own.append((keyNode, valueNode))
        ownKeys = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
        seen = set()
        pairs = []
        for keyNode, valueNode in merged:
            if keyNode.value not in ownKeys and keyNode.value not in seen:
                seen.add(keyNode.value)
                pairs.append((keyNode, valueNode))
        return pairs + own
