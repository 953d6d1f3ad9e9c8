"""
AutoNAT on a node: serve dial-backs to peers, ask peers to dial us back,
and keep the verdict (L{tau.autonat.reachability.Reachability}).

Probing follows go-libp2p's schedule: the first probe runs L{bootDelay}
seconds after start, or as soon as a peer that speaks AutoNAT is identified
(at most one probe every 2 seconds while the status is unknown); then every
L{retryInterval} seconds while the status is unknown or not yet confident,
and every L{refreshInterval} seconds once it is.  Each probe asks one
connected peer that speaks AutoNAT over a direct connection and was not
asked in the last L{throttlePeerPeriod} seconds.

The addresses we ask to be dialed at are our announced TCP addresses and,
for each IP peers observed us at (identify's observed address), that IP
with each port we listen on: behind a NAT with a forwarded port, that is
the address that works.  An address a peer reached that we do not announce
yet is announced while we are public.

Subscribers (L{subscribe}) hear every change of status.  The AutoNAT server
runs while the status is unknown or public, as in go-libp2p: peers should
not ask a node that cannot be reached itself.
"""

from __future__ import annotations

import random

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.autonat.client import dialBack
from tau.autonat.messages import E_DIAL_ERROR, E_DIAL_REFUSED, OK, PROTOCOL_ID
from tau.autonat.peers import directPeers, onIdentified
from tau.autonat.reachability import PRIVATE, PUBLIC, UNKNOWN, Reachability
from tau.autonat.server import AutoNATServer, EphemeralDialer, ipOf

__all__ = ["AutoNATService"]

#: Most addresses put in one request.
MAX_ADDRS = 16
#: Most observed IPs turned into addresses to try.
MAX_OBSERVED_IPS = 4


class AutoNATService(Service):
    """
    @param host: the node's L{tau.host.Host}.
    @param reactor: for the clock (and the dial-back host).
    @param serve: answer peers' dial-back requests.
    @param allowPrivate: dial back peers seen at private or loopback IPs
        (the server's policy; see L{tau.autonat.server}).
    @param reachability: C{"auto"} (find out), or C{"public"} /
        C{"private"} to force a verdict and never probe.
    @param dialBack: C{async (host, peerID, addrs, timeout) ->
        DialResponse}; L{tau.autonat.client.dialBack} by default.
    @param server: an L{AutoNATServer} to use instead of one with an
        L{EphemeralDialer}.
    @param serverOptions: keyword arguments for that L{AutoNATServer}
        (e.g. C{dialTimeout}).
    """

    log = Logger()
    name = "autonat"

    bootDelay = 15.0
    retryInterval = 90.0
    refreshInterval = 15 * 60.0
    forcedRetry = 2.0
    requestTimeout = 30.0
    throttlePeerPeriod = 90.0
    #: autonat streams one peer may have open to us at once
    maxInboundStreams = 2

    def __init__(
        self,
        host,
        reactor,
        *,
        serve=True,
        allowPrivate=False,
        reachability="auto",
        dialBack=dialBack,
        server=None,
        serverOptions=None,
        rng=None,
        **timing,
    ):
        if reachability not in ("auto", PUBLIC, PRIVATE):
            raise ValueError(f"reachability is auto, public or private, not {reachability!r}")
        for key, value in timing.items():
            if not hasattr(type(self), key):
                raise TypeError(f"unknown AutoNATService option {key!r}")
            setattr(self, key, value)
        self.host = host
        self.reactor = reactor
        self.clock = reactor
        self.serve = serve
        self.allowPrivate = allowPrivate
        self.forced = None if reachability == "auto" else reachability
        self._dialBack = dialBack
        self.server = server
        self.serverOptions = dict(serverOptions or {})
        self.rng = rng or random.Random()
        self.reachability = Reachability()
        self.confirmedAddrs = []
        self.probes = 0
        self._subscribers = []
        self._timer = None
        self._probing = None
        self._lastProbe = None
        self._recent = {}
        self._serving = False
        self._dialer = None
        self._observing = False

    # what the node asks

    @property
    def status(self):
        return self.reachability.status

    @property
    def confidence(self):
        return self.reachability.confidence

    def subscribe(self, callback):
        """
        Call C{callback(status)} on every change of status.
        """
        self._subscribers.append(callback)

    # life cycle

    def startService(self):
        super().startService()
        if self.serve:
            if self.server is None:
                self._dialer = EphemeralDialer(self.reactor, swarmKey=getattr(self.host, "swarmKey", None))
                self.server = AutoNATServer(
                    self.clock, self._dialer, allowPrivate=self.allowPrivate, **self.serverOptions
                )
            if self._dialer is not None:
                self._dialer.start()
            self.server.start()
        if self.forced is not None:
            self.reachability = Reachability(self.forced)
            self._updateServing()
            self._notify()
            return
        self._updateServing()
        if not self._observing:
            self._observing = True
            self.host.addConnectionObserver(self._connected)
        self._schedule(self.bootDelay)

    def stopService(self):
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._probing is not None:
            self._probing.cancel()
        if self._serving:
            self.host.removeHandler(PROTOCOL_ID)
            self._serving = False
        if self.server is not None:
            self.server.stop()
        if self._dialer is not None:
            return self._dialer.stop()
        return None

    def _updateServing(self):
        want = bool(self.running and self.serve and self.status != PRIVATE)
        if want == self._serving:
            return
        if want:
            self.host.setStreamHandler(PROTOCOL_ID, self.server.handle, maxInbound=self.maxInboundStreams)
        else:
            self.host.removeHandler(PROTOCOL_ID)
        self._serving = want
        changed = getattr(self.host, "notifyChanged", None)
        if changed is not None:
            changed()

    # events

    def _connected(self, connection):
        onIdentified(self.host, connection, lambda result: self._identified(connection, result), self.log, "autonat")

    def _identified(self, connection, result):
        if not self.running or self.forced is not None:
            return
        if self.status == UNKNOWN and PROTOCOL_ID in (result.protocols or ()) and self._probing is None:
            # A peer that can tell us: ask soon.
            soonest = 0.0 if self._lastProbe is None else self._lastProbe + self.forcedRetry - self.clock.seconds()
            self._schedule(max(soonest, 0.0), onlyIfSooner=True)

    # probing

    def _schedule(self, delay, onlyIfSooner=False):
        if not self.running:
            return
        if self._timer is not None and self._timer.active():
            if onlyIfSooner and self._timer.getTime() <= self.clock.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(delay, self._probe)

    def _nextDelay(self, forced=False):
        if forced and self.status == UNKNOWN:
            return self.forcedRetry
        if self.status == UNKNOWN or not self.reachability.confident:
            return self.retryInterval
        return self.refreshInterval

    def candidatePeers(self):
        """
        Connected peers we may ask now: they speak AutoNAT, we reach them
        directly, and we did not ask them lately.
        """
        now = self.clock.seconds()
        self._recent = {p: t for p, t in self._recent.items() if now - t < self.throttlePeerPeriod}
        return [p for p in directPeers(self.host, PROTOCOL_ID) if p not in self._recent]

    def addresses(self):
        """
        The addresses to ask to be dialed at.
        """
        out = []
        for addr in self.host.announcedAddresses():
            text = str(addr)
            if "/p2p-circuit" not in text and ipOf(text) is not None and text not in out:
                out.append(text)
        ports = []
        for addr in self.host.listenAddresses():
            text = str(addr)
            if ipOf(text) is not None:
                port = text.rsplit("/", 1)[1]
                if port not in ports:
                    ports.append(port)
        for ip in self.observedIPs():
            family = "ip6" if ":" in ip else "ip4"
            for port in ports:
                candidate = f"/{family}/{ip}/tcp/{port}"
                if candidate not in out:
                    out.append(candidate)
        return out[:MAX_ADDRS]

    def observedIPs(self):
        """
        The IPs connected peers see us at (from identify), most seen first.
        """
        counts = {}
        for peer in directPeers(self.host):
            record = self.host.peerstore.get(peer)
            ip = ipOf(record.observedAddr) if record is not None and record.observedAddr else None
            if ip is not None:
                counts[ip] = counts.get(ip, 0) + 1
        ranked = sorted(counts, key=lambda ip: -counts[ip])
        return ranked[:MAX_OBSERVED_IPS]

    def _probe(self):
        self._timer = None
        if not self.running or self._probing is not None:
            return
        self._lastProbe = self.clock.seconds()
        peers = self.candidatePeers()
        if not peers:
            self._schedule(self._nextDelay())
            return
        peer = self.rng.choice(peers)
        self._recent[peer] = self.clock.seconds()
        self.probes += 1
        d = Deferred.fromCoroutine(self._ask(peer))
        if not d.called:
            self._probing = d
        d.addErrback(lambda f: self.log.failure("autonat probe failed", failure=f))

    async def _ask(self, peer):
        addrs = self.addresses()
        forced = False
        try:
            response = await self._dialBack(self.host, peer, addrs, self.requestTimeout)
        except Exception as e:
            self.log.debug("autonat: asking {peer} failed: {why}", peer=str(peer), why=str(e) or e.__class__.__name__)
            observation = UNKNOWN
        else:
            self.log.debug(
                "autonat: {peer} answered {status} {text}", peer=str(peer), status=response.statusName, text=response.text
            )
            if response.status == OK:
                observation = PUBLIC
                self._confirm(response.addr, addrs)
            elif response.status == E_DIAL_ERROR:
                observation = PRIVATE
            elif response.status == E_DIAL_REFUSED:
                observation = None
                forced = True
            else:
                observation = UNKNOWN
        finally:
            self._probing = None
        if not self.running:
            return
        if observation is not None:
            self.record(observation)
        self._schedule(self._nextDelay(forced))

    def record(self, observation):
        """
        Take one observation (also used by tests and by other sources).
        """
        before = self.status
        if self.reachability.observe(observation):
            self.log.info(
                "reachability: {status} (was {before})", status=self.status, before=before
            )
            if self.status != PUBLIC:
                self._unconfirm()
            self._updateServing()
            self._notify()

    def _confirm(self, addr, asked):
        """
        A peer says it reached us at C{addr}.  Nothing checks that (the
        spec's security note), so it is announced only when it is one of
        the addresses we C{asked} to be dialed at: one peer cannot make us
        announce an address of its choosing (another node's, say).
        """
        if not addr or "/p2p-circuit" in addr or ipOf(addr) is None:
            return
        if addr not in asked:
            self.log.info("autonat: a peer says it reached us at {addr}, which we did not ask for; not announced", addr=addr)
            return
        if addr in [str(a) for a in self.host.announcedAddresses()] or addr in self.confirmedAddrs:
            return
        if len(self.confirmedAddrs) >= MAX_ADDRS:
            return
        add = getattr(self.host, "addAnnouncedAddrs", None)
        if add is None:
            return
        self.log.info("autonat: a peer reached us at {addr}; announcing it", addr=addr)
        self.confirmedAddrs.append(addr)
        add([addr])

    def _unconfirm(self):
        addrs, self.confirmedAddrs = self.confirmedAddrs, []
        remove = getattr(self.host, "removeAnnouncedAddrs", None)
        if addrs and remove is not None:
            remove(addrs)

    def _notify(self):
        for callback in list(self._subscribers):
            try:
                callback(self.status)
            except Exception:
                self.log.failure("reachability subscriber failed")
