"""
Errors that tau reports to people: each says where the problem is and what is expected.
"""


class ConfigError(Exception):
    """
    A node configuration is wrong.

    @ivar source: where the value came from (a file path, or "command line").
    @ivar field: the field, e.g. C{p2p-listen[1]}, or None for the whole source.
    @ivar problem: what is wrong and what is expected.
    """

    def __init__(self, source, field, problem):
        super().__init__(source, field, problem)
        self.source = str(source)
        self.field = field
        self.problem = problem

    def __str__(self):
        where = f"{self.source}: {self.field}" if self.field else str(self.source)
        return f"{where}: {self.problem}"
