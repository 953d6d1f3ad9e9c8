"""
The C{dht} section of a node config.

    dht:
      mode: auto                    # auto (server when the node listens), server, client
      provider-expiry: 172800       # seconds a provider record lives
      republish: 79200              # seconds between republishing our own records
      max-provider-records: 1000000 # other peers' provider records kept, in all
      max-provider-bytes: 128MiB    # ... and in bytes (at least 4 KiB)
      max-provider-records-per-peer: 10000   # ... per providing peer
"""

from tau.configsection import Section, choice, require, seconds, size


class DHTSection(Section):
    """
    The Kademlia DHT: its mode, provider record lifetime and how often our
    own records are republished, in seconds; how many of other peers'
    provider records it keeps, in all, in bytes and per providing peer.
    """

    name = "dht"
    defaults = {
        "mode": "auto",
        "provider-expiry": 48 * 3600.0,
        "republish": 22 * 3600.0,
        "max-provider-records": 1_000_000,
        "max-provider-bytes": 128 << 20,
        "max-provider-records-per-peer": 10_000,
    }

    def clean(self, source, value):
        choice(source, "dht", value, "mode", ("auto", "server", "client"), "expected auto, server or client")
        seconds(source, "dht", value, ("provider-expiry", "republish"))
        out = dict(value)
        for key in ("max-provider-records", "max-provider-records-per-peer"):
            if key in value:
                v = value[key]
                require(source, f"dht.{key}", isinstance(v, int) and not isinstance(v, bool) and v > 0,
                        "expected a whole number of records above 0")
        if "max-provider-bytes" in value:
            out["max-provider-bytes"] = size(source, "dht.max-provider-bytes", value["max-provider-bytes"])
            require(source, "dht.max-provider-bytes", out["max-provider-bytes"] >= 4096, "expected a size of at least 4 KiB")
        return out
