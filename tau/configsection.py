"""
Config sections: the parts of a node config that subsystems own.

A section is one top-level YAML mapping (C{dht:}, C{relay:}, C{tns:}...).
Its class lives next to the subsystem's code and says the field's name, its
defaults, how one layer's value is checked, how layers merge and what the
node finally holds; L{tau.config} composes the sections listed in its
C{SECTIONS} and knows nothing else of them.  Errors are
C{ConfigError(source, "section.field", "what is expected")}.
"""

import re

from tau.errors import ConfigError


def require(source, field, condition, expected):
    """
    @raise ConfigError: C{(source, field, expected)} unless C{condition}.
    """
    if not condition:
        raise ConfigError(source, field, expected)


class Section:
    """
    A config section: a mapping of fields, each with a default.

    Subclasses set L{name} and L{defaults} and override L{clean} to check
    and convert the fields one layer gives; L{finish} for checks that need
    the merged value, L{show} when the value held is not a plain mapping.

    @cvar name: the YAML field.
    @cvar defaults: each field's default, in the order they are listed.
    @cvar expected: what the mapping holds, for the error when a layer
        gives something else (None: the fields' names).
    """

    name = None
    defaults = {}
    expected = None

    @property
    def attribute(self):
        """
        The L{tau.config.NodeConfig} attribute holding the section:
        C{max-things} -> C{maxThings}.
        """
        return re.sub(r"-(.)", lambda m: m.group(1).upper(), self.name)

    def check(self, source, value):
        """
        One layer's value (a mapping of known fields), checked.

        @return: the fields this layer gives, cleaned.
        @raise ConfigError: naming the field and what is expected.
        """
        fields = ", ".join(self.defaults)
        require(source, self.name, isinstance(value, dict), f"expected a mapping with {self.expected or fields}")
        for key in value:
            require(source, f"{self.name}.{key}", key in self.defaults, f"unknown field (expected: {fields})")
        return self.clean(source, value)

    def clean(self, source, value):
        """
        The fields of C{value}, all known, checked and converted.
        """
        return dict(value)

    def merge(self, below, layer):
        """
        A higher layer over the fields from below: the keys it leaves out
        keep their value from below.
        """
        return {**below, **layer}

    def finish(self, source, fields, peerID):
        """
        What the node holds, from the merged fields.

        @param source: the last layer that gave the section ("defaults"
            when none did), for errors.
        @param peerID: the node's L{tau.identity.PeerID}.
        """
        return dict(fields)

    def show(self, value):
        """
        The value held, as plain YAML data for C{tau config show}.
        """
        return dict(value)

    def load(self, source, value):
        """
        What the node would hold with C{value} as the only layer (None: the
        defaults), for a subsystem used on its own.
        """
        fields = dict(self.defaults)
        if value is not None:
            fields = self.merge(fields, self.check(source, value))
        return self.finish(source, fields, None)


class TypedSection(Section):
    """
    A section held as a frozen dataclass L{type}, whose C{FIELDS} maps
    each YAML field to an attribute; the dataclass's defaults are the
    section's.

    @cvar checks: YAML field -> C{check(source, field, value)} returning
        the value to hold or raising L{ConfigError}.
    """

    type = None
    checks = {}

    @property
    def defaults(self):
        return {key: getattr(self.type, attr) for key, attr in self.type.FIELDS.items()}

    def clean(self, source, value):
        return {key: self.checks[key](source, f"{self.name}.{key}", v) for key, v in value.items()}

    def finish(self, source, fields, peerID):
        return self.type(**{self.type.FIELDS[key]: v for key, v in fields.items()})

    def show(self, value):
        return {key: getattr(value, attr) for key, attr in self.type.FIELDS.items()}


def isNumber(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def seconds(source, name, value, keys, positive=True):
    """
    Each of C{keys} given in C{value}: a number of seconds, above 0 when
    C{positive}.
    """
    for key in keys:
        if key in value:
            v = value[key]
            if positive:
                require(source, f"{name}.{key}", isNumber(v) and v > 0, "expected a positive number of seconds")
            else:
                require(source, f"{name}.{key}", isNumber(v) and v >= 0, "expected a number of seconds")


def wholeNumbers(source, name, value, keys, expected):
    """
    Each of C{keys} given in C{value}: a whole number, 0 or more.
    """
    for key in keys:
        if key in value:
            v = value[key]
            require(source, f"{name}.{key}", isinstance(v, int) and not isinstance(v, bool) and v >= 0, expected)


def choice(source, name, value, key, choices, expected):
    if key in value:
        require(source, f"{name}.{key}", value[key] in choices, expected)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gib": 2**30,
    "t": 10**12, "tb": 10**12, "tib": 2**40,
    "p": 10**15, "pb": 10**15, "pib": 2**50,
}


def parseSize(value):
    """
    A size in bytes from a whole number or a string like C{"10GiB"},
    C{"500 MB"} or C{"1.5G"} (as Taubyte's configs read sizes: KB, MB, GB
    are powers of 1000, KiB, MiB, GiB of 1024).

    @raise ValueError: with what is wrong.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value}: negative")
        return value
    if isinstance(value, float):
        raise ValueError(f"invalid size {value!r}: expected a whole number of bytes or a string like 10GiB")
    if not isinstance(value, str):
        raise ValueError(f"invalid size {value!r}")
    m = _SIZE.match(value)
    unit = m and _SIZE_UNITS.get(m.group(2).lower())
    if unit is None:
        raise ValueError(f"invalid size {value!r}: expected a number and a unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)")
    return int(float(m.group(1)) * unit)


def size(source, field, value):
    """
    A size (L{parseSize}) in bytes.

    @raise ConfigError: naming C{field} when it is not one.
    """
    try:
        return parseSize(value)
    except ValueError as e:
        raise ConfigError(source, field, str(e)) from None
