"""
Regular expressions from users (a tns lookup, a project's messaging,
database and storage C{match}), which Taubyte runs with go's RE2 (linear
time).  Python's C{re} backtracks, so what could backtrack for long is
refused: back-references and lookarounds (RE2 has none), a repeat inside a
repeat, more than C{maxRepeats} repeats, a pattern longer than
C{maxPattern}.
"""

import re

try:
    from re import _parser as sre_parse
except ImportError:  # Python < 3.11
    import sre_parse

#: the longest pattern, and the repeats it may hold, by default
MAX_PATTERN = 512
MAX_REPEATS = 8


class UnsafeRegex(ValueError):
    """
    A pattern that is not a regular expression, or one that is refused.
    """


def compileSafe(pattern, maxPattern=MAX_PATTERN, maxRepeats=MAX_REPEATS):
    """
    C{pattern} compiled.

    @raise UnsafeRegex: it is not a regular expression or is refused.
    """
    if len(pattern) > maxPattern:
        raise UnsafeRegex(f"a regex of at most {maxPattern} characters")
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as e:
        raise UnsafeRegex(f"not a regular expression: {e}") from None
    repeats = 0

    def walk(items, inRepeat):
        nonlocal repeats
        for op, arg in items:
            name = str(op)
            if name in ("GROUPREF", "GROUPREF_EXISTS", "ASSERT", "ASSERT_NOT", "ATOMIC_GROUP", "POSSESSIVE_REPEAT"):
                raise UnsafeRegex("back-references and lookarounds are not supported (RE2 has none)")
            if name in ("MAX_REPEAT", "MIN_REPEAT"):
                repeats += 1
                if inRepeat:
                    raise UnsafeRegex("a repeat inside a repeat is not supported")
                walk(arg[2], True)
            elif name == "SUBPATTERN":
                walk(arg[-1], inRepeat)
            elif name == "BRANCH":
                for branch in arg[1]:
                    walk(branch, inRepeat)

    walk(parsed, False)
    if repeats > maxRepeats:
        raise UnsafeRegex(f"at most {maxRepeats} repeats")
    return re.compile(pattern)
