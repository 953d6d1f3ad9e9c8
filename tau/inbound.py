"""
Which inbound connections a host takes, so that a few sockets cannot lock
everyone out.

Connections are counted per address group (L{tau.addrs.addressGroup}: an
IPv4 address, or an IPv6 /64; the connections relayed to us through one
relay count as that relay's group).  One group may have at most
C{maxUpgradesPerIP} upgrades in progress and C{maxPerIP} inbound
connections in all (upgrading or established); 127.0.0.1 and ::1, this
machine's own processes, are exempt.  When all C{maxUpgrades}
upgrade slots are taken, a connection from a quieter group still gets in:
the newest upgrade of the group holding the most slots is aborted for it;
a newcomer from that busiest group is the one refused.  A connection that
sends nothing for C{firstBytes} seconds after it is accepted is dropped
(the whole upgrade may take the host's C{upgradeTimeout}).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger
from twisted.python.failure import Failure

#: The C{connections} config keys of L{InboundLimits}.
CONFIG_NAMES = {
    "max-upgrades": "maxUpgrades",
    "max-upgrades-per-ip": "maxUpgradesPerIP",
    "max-per-ip": "maxPerIP",
    "first-bytes": "firstBytes",
}
#: The groups of this machine's own loopback addresses, 127.0.0.1 and ::1:
#: a local cloud runs every node there, and go-libp2p does not limit
#: loopback per address either.  Other loopback addresses (127.0.0.2...)
#: are limited like any other address.
EXEMPT = frozenset({"127.0.0.1", "::/64"})
#: Seconds between two log lines about refusals from one group.
LOG_INTERVAL = 60.0
#: (kind, group) pairs whose last log line is remembered.
MAX_LOGGED = 1024


@dataclass(frozen=True)
class InboundLimits:
    """
    The limits of L{InboundGate}; counts of 0 mean no limit.

    go-libp2p allows 8 connections per IPv4 address (its resource manager's
    connection limiter); here 8 is the limit of upgrades in progress, and
    an address may keep up to 32 connections once they are upgraded (many
    nodes behind one NAT; a local cloud on loopback).

    @ivar maxUpgrades: inbound upgrades in progress at once, in all.
    @ivar maxUpgradesPerIP: inbound upgrades in progress per group.
    @ivar maxPerIP: inbound connections per group, upgrading or upgraded.
    @ivar firstBytes: seconds a new inbound connection may stay silent.
    @ivar exempt: groups the limits per group do not apply to (they still
        count in C{maxUpgrades} and may give way there).
    """

    maxUpgrades: int = 128
    maxUpgradesPerIP: int = 8
    maxPerIP: int = 32
    firstBytes: float = 3.0
    exempt: frozenset = EXEMPT

    @classmethod
    def fromConfig(cls, config: dict) -> "InboundLimits":
        """
        From the C{connections} mapping of the node config; other keys are
        ignored.
        """
        return cls(**{CONFIG_NAMES[k]: v for k, v in config.items() if k in CONFIG_NAMES})


class InboundGate:
    """
    Admits inbound L{tau.connection.RawConnection}s against
    L{InboundLimits} and counts them, per group, until they close.

    @param clock: an L{IReactorTime}.
    """

    log = Logger()

    def __init__(self, clock, limits: InboundLimits):
        self.clock = clock
        self.limits = limits
        self._upgrading: dict = {}  # group -> [RawConnection], oldest first
        self._silence: dict = {}  # RawConnection -> first-bytes deadline call
        self._established: dict = {}  # group -> upgraded inbound connections open
        self._total = 0
        self._logged: dict = {}  # (kind, group) -> clock seconds of its last log line

    @property
    def upgrading(self) -> int:
        """
        Inbound upgrades in progress.
        """
        return self._total

    def count(self, group) -> tuple[int, int]:
        """
        C{(upgrades in progress, upgraded connections open)} of C{group}.
        """
        return len(self._upgrading.get(group, ())), self._established.get(group, 0)

    def admit(self, raw, group) -> bool:
        """
        Take C{raw}, a new inbound raw connection from C{group}, or refuse
        it (False: the caller drops it).  Taking it may abort the newest
        upgrade of the busiest group.
        """
        limits = self.limits
        upgrading, established = self.count(group)
        capped = group not in limits.exempt
        if capped and limits.maxPerIP and upgrading + established >= limits.maxPerIP:
            return self.refuse(group, f"{upgrading + established} connections")
        if capped and limits.maxUpgradesPerIP and upgrading >= limits.maxUpgradesPerIP:
            return self.refuse(group, f"{upgrading} upgrades in progress")
        if limits.maxUpgrades and self._total >= limits.maxUpgrades:
            busiest = max(self._upgrading, key=lambda g: len(self._upgrading[g]))
            most = len(self._upgrading[busiest])
            if upgrading >= most:
                return self.refuse(group, f"{upgrading} upgrades in progress, all {self._total} upgrade slots taken")
            level = self.log.warn if self._mayLog(("evict", busiest)) else self.log.debug
            level(
                "{address} holds {count} of the {total} upgrade slots: its newest connection is dropped "
                "for one from {other} (said once a minute per address)",
                address=busiest,
                count=most,
                total=self._total,
                other=group,
            )
            self._upgrading[busiest][-1].abort(f"dropped for a connection from {group}: {busiest} held {most} upgrade slots")
        self._upgrading.setdefault(group, []).append(raw)
        self._total += 1
        if limits.firstBytes:
            self._silence[raw] = self.clock.callLater(limits.firstBytes, self._silent, raw)
        raw.upgraded.whenFired().addBoth(self._done, raw, group)
        return True

    def refuse(self, group, reason) -> bool:
        """
        Log that an inbound connection from C{group} is refused for
        C{reason} (once a minute per group, at debug level in between).

        @return: False
        """
        level = self.log.warn if self._mayLog(("refuse", group)) else self.log.debug
        level("refusing inbound connections from {address}: {reason} (said once a minute per address)", address=group, reason=reason)
        return False

    def stop(self):
        """
        Abort the upgrades in progress (the host stops).
        """
        for raws in list(self._upgrading.values()):
            for raw in list(raws):
                raw.abort("the host is stopping")

    def _mayLog(self, key) -> bool:
        """
        Whether a line about C{key} may be logged at more than debug level
        now: not if one was, less than L{LOG_INTERVAL} seconds ago.
        """
        now = self.clock.seconds()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_INTERVAL:
            return False
        self._logged.pop(key, None)
        if len(self._logged) >= MAX_LOGGED:
            self._logged.pop(next(iter(self._logged)))
        self._logged[key] = now
        return True

    def _silent(self, raw):
        self._silence.pop(raw, None)
        if raw.received == 0:
            raw.abort(f"nothing received in {self.limits.firstBytes}s")

    def _done(self, result, raw, group):
        call = self._silence.pop(raw, None)
        if call is not None and call.active():
            call.cancel()
        raws = self._upgrading[group]
        raws.remove(raw)
        if not raws:
            del self._upgrading[group]
        self._total -= 1
        if not isinstance(result, Failure):
            self._established[group] = self._established.get(group, 0) + 1
            result.whenClosed().addBoth(self._closed, group)
        return None

    def _closed(self, result, group):
        left = self._established[group] - 1
        if left:
            self._established[group] = left
        else:
            del self._established[group]
        return None
