"""
The C{kvdb} section of a node config: the bytes of deltas each writer may
write in a database created on this node (the quota goes into the
database's genesis, so every replica enforces the same).
"""

from tau.configsection import Section, require, size


class KVDBSection(Section):
    name = "kvdb"
    defaults = {"writer-quota": 1 << 30}

    def clean(self, source, value):
        out = dict(value)
        if "writer-quota" in value:
            out["writer-quota"] = size(source, "kvdb.writer-quota", value["writer-quota"])
            require(source, "kvdb.writer-quota", out["writer-quota"] > 0, "expected a size above 0 bytes")
        return out
