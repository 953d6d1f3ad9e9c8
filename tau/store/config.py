"""
The C{storage} section of a node config: the most bytes of unpinned blocks
the block store keeps before the least recently used are collected (None:
no automatic GC), and how often (seconds) it checks; it also checks after
every C{budget / 16} bytes written.
"""

from tau.configsection import Section, parseSize, require, seconds
from tau.errors import ConfigError


class StorageSection(Section):
    name = "storage"
    expected = "budget and gc-interval"
    defaults = {"budget": None, "gc-interval": 3600.0}

    def clean(self, source, value):
        out = dict(value)
        if "budget" in value:
            v = value["budget"]
            if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "off")):
                out["budget"] = None
            else:
                try:
                    out["budget"] = parseSize(v)
                except ValueError as e:
                    raise ConfigError(source, "storage.budget", f"{e}; or none for no automatic GC") from None
                require(source, "storage.budget", out["budget"] > 0, "expected a size above 0 bytes (or none for no automatic GC)")
        seconds(source, "storage", value, ("gc-interval",))
        if "gc-interval" in value:
            out["gc-interval"] = float(value["gc-interval"])
        return out
