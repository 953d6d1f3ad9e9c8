"""
Reading one field of a resource's YAML by its declared type, as Taubyte's
schema engine reads it: aliases (tcc's C{Compat} paths), required and
conditionally required fields, defaults, notation tolerance (a number is fine
where a string is declared, never a bool), then the value's own check.
"""

import re
from decimal import Decimal

from tau.project import units
from tau.project.validators import quoted
from tau.project.yamlnodes import Mapping, Scalar, Sequence, describe

STR, BOOL, STRS, DURATION, BYTES = "a string", "a boolean", "a list of strings", "a duration", "a size"

#: YAML 1.2 core schema, as Go's yaml.v3 resolves plain scalars.
_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_TRUE = re.compile(r"(?:true|True|TRUE)\Z")
_FALSE = re.compile(r"(?:false|False|FALSE)\Z")
#: yaml.v3 also takes YAML 1.1's words when the target is a typed bool.
_TRUE_WORDS = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_FALSE_WORDS = {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}
#: yaml.v3 reads a plain number with Go's strconv.ParseInt(text, 0, 64)
#: after dropping "_": 0x/0o/0b prefixes, and a leading 0 means octal.
_INT = re.compile(r"([-+]?)(?:0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|0[bB]([01]+)|0([0-7]+)|([0-9]+))\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")

_ABSENT = object()


class Got:
    """
    A field's value and the line it came from; C{lines} has one line per
    item of a list; C{name} is the path it was read at (an alias, maybe).
    """

    __slots__ = ("value", "line", "lines", "name")

    def __init__(self, value, line, lines=(), name=""):
        self.value = value
        self.line = line
        self.lines = lines
        self.name = name


class Field:
    """
    One field of a kind.

    @ivar wire: the compiled key.
    @ivar path: the YAML path, a tuple of keys.
    @ivar type: C{STR}, C{BOOL}, C{STRS}, C{DURATION} or C{BYTES}.
    @ivar aliases: other YAML paths read when C{path} is absent.
    @ivar required: always required.
    @ivar requiredWhen: C{(discriminatorPath, values)}: required when that
        field is one of C{values}.
    @ivar requiredUnless: bool fields' paths: required unless one is true.
    @ivar default: the value when absent (none if not given).
    @ivar check: the value's validator (L{tau.project.validators}).
    """

    def __init__(self, wire, path, type=STR, *, aliases=(), required=False, requiredWhen=None, requiredUnless=None, default=_ABSENT, check=None):
        self.wire = wire
        self.path = tuple(path.split("/"))
        self.type = type
        self.aliases = tuple(tuple(a.split("/")) for a in aliases)
        self.required = required
        self.requiredWhen = requiredWhen
        self.requiredUnless = requiredUnless
        self.default = default
        self.check = check

    @property
    def name(self):
        return "/".join(self.path)


def _goFloatText(text):
    """
    A YAML float as Go's C{strconv.FormatFloat(f, 'f', -1, 64)} prints it.
    """
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        return None
    digits = format(Decimal(repr(value)), "f")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return "0" if digits == "-0" else digits


def scalarText(node):
    """
    The string a scalar gives a string field, C{None} for a null, or
    C{_ABSENT} when it is not a string at all (a bool, a list, a mapping).
    """
    if not isinstance(node, Scalar):
        return _ABSENT
    if not node.plain:
        return node.text
    text = node.text
    if _NULL.match(text):
        return None
    if _TRUE.match(text) or _FALSE.match(text):
        return _ABSENT
    number = _INT.match(text.replace("_", ""))
    if number:
        sign, *digits = number.groups()
        base, value = next((b, d) for b, d in zip((16, 8, 2, 8, 10), digits) if d is not None)
        integer = int(value, base) * (-1 if sign == "-" else 1)
        if -(2**63) <= integer < 2**64:
            return str(integer)
    if _FLOAT.match(text):
        converted = _goFloatText(text)
        return text if converted is None else converted
    return text


def _boolean(node):
    if not isinstance(node, Scalar) or not node.plain:
        return _ABSENT
    if _NULL.match(node.text):
        return None
    if _TRUE.match(node.text) or node.text in _TRUE_WORDS:
        return True
    if _FALSE.match(node.text) or node.text in _FALSE_WORDS:
        return False
    return _ABSENT


class Reader:
    """
    Reads fields of one YAML mapping, reporting each mistake to C{report}
    against C{file}.
    """

    def __init__(self, report, file, doc):
        self.report = report
        self.file = file
        self.doc = doc
        self.broken = set()

    def error(self, line, field, message):
        self.report.error(self.file, line, field, message)

    def locate(self, path):
        """
        The node at C{path}, or C{None} and the deepest mapping on the way
        when it is absent. A non-mapping in the way is reported.

        @return: C{(node, line)}: the node (or C{None}) and the line to blame
            for it (its own, or its closest present parent's).
        """
        node = self.doc
        line = self.doc.line
        for depth, key in enumerate(path):
            if isinstance(node, Scalar) and node.plain and _NULL.match(node.text):
                return None, line
            if not isinstance(node, Mapping):
                # Reported once; the fields below it are not then "missing".
                self.broken.add(path[:depth])
                self.error(node.line, "/".join(path[:depth]), f"has a value of the wrong type (expected a mapping, got {describe(node)})")
                return None, line
            if key not in node.entries:
                return None, line
            line = node.keyLine(key)
            node = node.get(key)
        return node, line

    def discriminator(self, path):
        """
        The text of a string field without reporting anything (C{None} when
        absent or not a string).
        """
        node = self.doc
        for key in path:
            if not isinstance(node, Mapping) or key not in node.entries:
                return None
            node = node.get(key)
        text = scalarText(node)
        return text if isinstance(text, str) else None

    def flag(self, path):
        node = self.doc
        for key in path:
            if not isinstance(node, Mapping) or key not in node.entries:
                return None
            node = node.get(key)
        value = _boolean(node)
        return value if isinstance(value, bool) else None

    def isRequired(self, field):
        if field.required:
            return True
        if field.requiredWhen:
            path, values = field.requiredWhen
            return self.discriminator(tuple(path.split("/"))) in values
        if field.requiredUnless:
            return not any(self.flag(tuple(path.split("/"))) for path in field.requiredUnless)
        return False

    def read(self, field):
        """
        The field's compiled value, or C{None} when it is absent and has no
        default or is wrong (then reported).
        """
        path = field.path
        node, line = self.locate(path)
        for alias in field.aliases:
            if node is not None:
                break
            aliasNode, aliasLine = self.locate(alias)
            if aliasNode is not None:
                node, line, path = aliasNode, aliasLine, alias
        name = "/".join(path)
        got = self._convert(field, name, node)
        if got is _ABSENT:
            return None
        if got is None:
            if any(field.path[:depth] in self.broken for depth in range(1, len(field.path))):
                return None
            if self.isRequired(field):
                self.error(line, name, "required attribute")
                return None
            if field.default is not _ABSENT:
                return Got(field.default, line, name=name)
            return None
        if self.isRequired(field) and got.value in ("", []):
            self.error(got.line, name, "required attribute is empty")
            return None
        return self._checked(field, got)

    def _convert(self, field, name, node):
        if node is None:
            return None
        if field.type == BOOL:
            value = _boolean(node)
        elif field.type == STRS:
            return self._strings(field, name, node)
        else:
            value = scalarText(node)
        if value is None:
            return None
        if value is _ABSENT:
            self.error(node.line, name, f"has a value of the wrong type (expected {field.type}, got {_what(node)})")
            return _ABSENT
        return Got(value, node.line, name=name)

    def _strings(self, field, name, node):
        if isinstance(node, Scalar) and scalarText(node) is None:
            return None
        if not isinstance(node, Sequence):
            self.error(node.line, name, f"has a value of the wrong type (expected {field.type}, got {_what(node)})")
            return _ABSENT
        values, lines = [], []
        for item in node.items:
            text = scalarText(item)
            if not isinstance(text, str):
                self.error(item.line, name, f"has a value of the wrong type (expected {field.type}, got {_what(item)} in the list)")
                return _ABSENT
            values.append(text)
            lines.append(item.line)
        return Got(values, node.line, lines, name)

    def _checked(self, field, got):
        if field.type in (DURATION, BYTES):
            parse, what = (units.parseDuration, "duration") if field.type == DURATION else (units.parseBytes, "size")
            try:
                number = parse(got.value)
            except units.UnitError as e:
                self.error(got.line, got.name, f"invalid {what} {quoted(got.value)}: {e}")
                return None
            if number < 0:
                # Taubyte's parsers take a sign; a negative limit is never
                # meant, so it is refused here rather than at run time.
                self.error(got.line, got.name, f"invalid {what} {quoted(got.value)}: must not be negative")
                return None
            return Got(number, got.line, name=got.name)
        if field.check is not None:
            values = got.value if field.type == STRS else [got.value]
            lines = got.lines if field.type == STRS else [got.line]
            for value, line in zip(values, lines):
                message = field.check(value)
                if message:
                    self.error(line, got.name, message)
                    return None
        return got


def _what(node):
    if isinstance(node, Scalar) and node.plain and (_TRUE.match(node.text) or _FALSE.match(node.text)):
        return "a boolean"
    if isinstance(node, Scalar):
        return f"the scalar {quoted(node.text)}"
    return describe(node)
