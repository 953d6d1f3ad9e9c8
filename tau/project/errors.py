"""
What is wrong with a project repository, and where.

Taubyte's compiler stops at its first error; ours goes on and reports every
one, each with its file (relative to the repository root), line and field.
"""

import functools


@functools.total_ordering
class ProjectError:
    """
    One mistake: C{file:line: field: message}.

    @ivar field: the YAML path of the field (C{execution/timeout}), or what
        the mistake is about when no single field is (C{yaml}, C{kind}).
    """

    __slots__ = ("file", "line", "field", "message")

    def __init__(self, file, line, field, message):
        self.file = file
        self.line = line
        self.field = field
        self.message = message

    def _key(self):
        return (self.file, self.line, self.field, self.message)

    def __eq__(self, other):
        return isinstance(other, ProjectError) and self._key() == other._key()

    def __lt__(self, other):
        return self._key() < other._key()

    def __hash__(self):
        return hash(self._key())

    def __str__(self):
        return f"{self.file}:{self.line}: {self.field}: {self.message}"

    def __repr__(self):
        return f"<ProjectError {self}>"


class ProjectErrors(Exception):
    """
    A repository that does not compile; C{errors} holds every mistake found,
    sorted by file and line.
    """

    def __init__(self, errors):
        self.errors = sorted(set(errors))
        super().__init__("\n".join(map(str, self.errors)))


class Report:
    """
    The errors gathered while a repository is read and compiled.
    """

    def __init__(self):
        self.errors = []

    def error(self, file, line, field, message):
        self.errors.append(ProjectError(file, line, field, message))

    def raiseIfAny(self):
        if self.errors:
            raise ProjectErrors(self.errors)
