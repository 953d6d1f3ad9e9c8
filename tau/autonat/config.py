"""
The C{autonat} section of a node config.

    autonat:
      service: true          # answer peers' dial-back requests
      allow-private: false   # also dial back peers seen at private or loopback IPs (a LAN, a test network)
      reachability: auto     # auto: ask peers; public or private: forced
      boot-delay: 15         # seconds before the first probe
      auto-relay: true       # a private node holds relay reservations
"""

from tau.configsection import Section, choice, require, seconds


class AutoNATSection(Section):
    name = "autonat"
    defaults = {
        "service": True,
        "allow-private": False,
        "reachability": "auto",
        "boot-delay": 15.0,
        "auto-relay": True,
    }

    def clean(self, source, value):
        for key in ("service", "allow-private", "auto-relay"):
            if key in value:
                require(source, f"autonat.{key}", isinstance(value[key], bool), "expected true or false")
        choice(source, "autonat", value, "reachability", ("auto", "public", "private"), "expected auto, public or private")
        seconds(source, "autonat", value, ("boot-delay",), positive=False)
        return dict(value)
