"""
The C{dcutr} section of a node config.

    dcutr:
      hole-punching: true   # a private node upgrades relayed connections (and every node answers)
      attempts: 3           # tries per relayed connection (1 to 10)
      timeout: 5            # seconds for each message, and for each dial and its upgrade
"""

from tau.configsection import Section, require, seconds

MAX_ATTEMPTS = 10


class DCUtRSection(Section):
    name = "dcutr"
    defaults = {
        "hole-punching": True,
        "attempts": 3,
        "timeout": 5.0,
    }

    def clean(self, source, value):
        if "hole-punching" in value:
            require(source, "dcutr.hole-punching", isinstance(value["hole-punching"], bool), "expected true or false")
        if "attempts" in value:
            v = value["attempts"]
            require(
                source,
                "dcutr.attempts",
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_ATTEMPTS,
                f"expected a whole number from 1 to {MAX_ATTEMPTS}",
            )
        seconds(source, "dcutr", value, ("timeout",))
        return dict(value)
