"""
The C{relay} section of a node config: whether the node serves as a
circuit relay (auto: on for a full shape that listens for peers, until its
reachability says it cannot be dialed; on; off) and the relay's limits
(go-libp2p's defaults; see L{tau.relay.RelayLimits.fromConfig}).
"""

from tau.configsection import Section, choice, require, seconds, wholeNumbers


class RelaySection(Section):
    """
    Reservation lifetime, reservations in all and per IP address, RESERVE
    requests per peer and minute, circuits per peer and in all, and per
    circuit its duration (seconds) and bytes per direction (0: no limit).
    """

    name = "relay"
    expected = "service and limits"
    defaults = {
        "service": "auto",
        "reservation-ttl": 3600.0,
        "max-reservations": 128,
        "max-reservations-per-ip": 8,
        "reserve-rate": 8,
        "max-circuits": 16,
        "max-circuits-total": 1024,
        "duration": 120,
        "data": 131072,
    }

    def clean(self, source, value):
        choice(source, "relay", value, "service", ("auto", "on", "off"), "expected auto, on or off")
        seconds(source, "relay", value, ("reservation-ttl",))
        wholeNumbers(
            source,
            "relay",
            value,
            ("max-reservations", "max-reservations-per-ip", "reserve-rate", "max-circuits", "max-circuits-total", "duration", "data"),
            "expected a whole number (0: no limit)",
        )
        if "duration" in value:
            require(source, "relay.duration", value["duration"] < 1 << 32, "expected fewer than 2^32 seconds")
        return dict(value)
