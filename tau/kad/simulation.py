"""
A deterministic simulation of many DHT nodes in one process.

Every node is a real L{KademliaCore} with a real L{RecordStore} (in memory,
opened only if the node ever stores something); they talk through
L{SimTransport}, which delivers each message after a seeded random latency on
one L{twisted.internet.task.Clock}, encoding and decoding it on the way so the
wire codec is exercised too.  Dead nodes are silent: requests to them never
answer and time out.

What is shared to make thousands of nodes cheap, and so not simulated:

  - Routing tables are built from the global view (L{SimNetwork.buildTables})
    instead of bootstrapping every node through the network: for each node
    and each bucket (cpl 0, 1, ...), up to k peers drawn at random among all
    nodes with that common prefix length, found by binary search in the
    sorted list of node positions (O(N log N * k) instead of N lookups of
    O(log N) RPCs each).  This is the table a node converges to after
    bootstrap and refreshes; L{SimNetwork.bootstrapAll} exists to test the
    real path on small networks.
  - Peer IDs are random sha2-256 multihashes (no key generation).
  - Nodes die after the tables are built, so 20% dead means 20% of every
    table's entries are stale: the worst case of silent departures.
  - Lookups run one at a time; the clock jumps from event to event.
"""

import bisect
import math
import random
import statistics

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer

from tau.identity import PeerID
from tau.kad.dht import IKadTransport, KademliaCore
from tau.kad.keys import KEY_BITS, kadID, peerKadID
from tau.kad.messages import PeerInfo, decodeMessage, encodeMessage
from tau.kad.queries import NotFound
from tau.kad.records import RecordStore

__all__ = ["SimNetwork", "SimTransport", "percentile", "runScenario"]

#: /ip4/127.0.0.1/tcp/4001 in binary form: every simulated node's address.
SIM_ADDR = bytes.fromhex("047f000001060fa1")


@implementer(IKadTransport)
class SimTransport:
    """
    The network as one node sees it.
    """

    def __init__(self, net, selfID):
        self.net = net
        self.selfID = selfID
        self.core = None

    def _deliver(self, peerID, message, reply):
        net = self.net
        target = net.nodes.get(peerID)
        if target is None or peerID in net.dead:
            return None
        if net.wire:
            message = decodeMessage(encodeMessage(message))
        target.peerSeen(self.selfID, self.core.mode == "server")
        response = target.handle(self.selfID, message)
        if reply and response is not None and net.wire:
            response = decodeMessage(encodeMessage(response))
        return response

    def request(self, peerID, message, addrs=()):
        net = self.net
        net.messages += 1
        calls = []
        d = Deferred(lambda _: [c.cancel() for c in calls if c.active()])

        def arrive():
            if peerID in net.dead or peerID not in net.nodes:
                return  # silently gone: the caller times out
            try:
                response = self._deliver(peerID, message, True)
            except Exception as e:
                calls.append(net.clock.callLater(net.latency(), d.errback, e))
                return
            calls.append(net.clock.callLater(net.latency(), d.callback, response))

        calls.append(net.clock.callLater(net.latency(), arrive))
        return d

    def send(self, peerID, message, addrs=()):
        net = self.net
        net.messages += 1

        def arrive():
            try:
                self._deliver(peerID, message, False)
            except Exception:
                pass

        net.clock.callLater(net.latency(), arrive)

    def addrsOf(self, peerID):
        if peerID == self.selfID or peerID in self.core.table:
            return (SIM_ADDR,)
        return ()

    def selfAddrs(self):
        return (SIM_ADDR,)


class SimNetwork:
    """
    C{n} nodes on one clock.

    @ivar nodes: C{{PeerID: KademliaCore}}.
    @ivar dead: the set of silent nodes.
    """

    def __init__(self, n, seed=0, k=20, alpha=10, beta=3, wire=True, latency=(0.01, 0.1), **coreOptions):
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.k = k
        self.wire = wire
        self._latency = latency
        self.messages = 0
        self.dead = set()
        self.nodes = {}
        ids = set()
        while len(ids) < n:
            ids.add(PeerID(b"\x12\x20" + self.rng.getrandbits(256).to_bytes(32, "big")))
        self.ids = sorted(ids, key=lambda p: p.toBytes())
        for peer in self.ids:
            transport = SimTransport(self, peer)
            core = KademliaCore(
                peer,
                self.clock,
                transport,
                RecordStore(":memory:"),
                k=k,
                alpha=alpha,
                beta=beta,
                rng=random.Random(self.rng.getrandbits(64)),
                **coreOptions,
            )
            transport.core = core
            self.nodes[peer] = core

    def latency(self):
        low, high = self._latency
        return low + (high - low) * self.rng.random()

    def live(self):
        return [p for p in self.ids if p not in self.dead]

    def buildTables(self):
        """
        Fill every routing table from the global view (see the module
        docstring).
        """
        positions = sorted((peerKadID(p), p) for p in self.ids)
        kids = [kid for kid, _ in positions]
        now = self.clock.seconds()
        rng = self.rng
        k = self.k
        for kid, peer in positions:
            table = self.nodes[peer].table
            for cpl in range(KEY_BITS):
                shift = KEY_BITS - cpl
                # Everyone sharing at least cpl bits with us (ourselves too).
                same = kid >> shift
                lo = bisect.bisect_left(kids, same << shift)
                hi = bisect.bisect_left(kids, (same + 1) << shift)
                if hi - lo <= 1:
                    break
                # Those differing at bit cpl: bucket cpl.
                other = (kid >> (shift - 1)) ^ 1
                blo = bisect.bisect_left(kids, other << (shift - 1), lo, hi)
                bhi = bisect.bisect_left(kids, (other + 1) << (shift - 1), lo, hi)
                count = bhi - blo
                if count <= 0:
                    continue
                chosen = range(blo, bhi) if count <= k else rng.sample(range(blo, bhi), k)
                for i in chosen:
                    table.add(positions[i][1], True, now)

    def bootstrapAll(self, seeds=3):
        """
        The real path, for small networks: every node bootstraps from
        C{seeds} nodes that already joined (the first node from nothing).
        """
        joined = []
        for peer in self.ids:
            core = self.nodes[peer]
            if joined:
                infos = [PeerInfo(p, (SIM_ADDR,)) for p in self.rng.sample(joined, min(seeds, len(joined)))]
                self.run(core.bootstrap(infos))
            joined.append(peer)

    def kill(self, fraction):
        """
        Silence a seeded random C{fraction} of the nodes.
        """
        self.dead = set(self.rng.sample(self.ids, int(len(self.ids) * fraction)))

    def run(self, d, limit=10**6):
        """
        Advance the clock event by event until C{d} fires; return its result
        (or raise its failure).
        """
        results = []
        d.addBoth(results.append)
        steps = 0
        while not results:
            calls = self.clock.getDelayedCalls()
            if not calls:
                raise RuntimeError("simulation stuck: nothing scheduled and no result")
            nextTime = min(c.getTime() for c in calls)
            self.clock.advance(max(0.0, nextTime - self.clock.seconds()))
            steps += 1
            if steps > limit:
                raise RuntimeError("simulation did not converge")
        result = results[0]
        if hasattr(result, "raiseException"):
            result.raiseException()
        return result

    def settle(self, seconds=1.0):
        """
        Run the events of the next C{seconds} (e.g. ADD_PROVIDER deliveries),
        one by one, and move the clock to their end.
        """
        deadline = self.clock.seconds() + seconds
        while True:
            pending = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= deadline]
            if not pending:
                break
            self.clock.advance(max(0.0, min(pending) - self.clock.seconds()))
        self.clock.advance(max(0.0, deadline - self.clock.seconds()))

    def trueClosest(self, key, count, liveOnly=True):
        target = kadID(key)
        pool = self.live() if liveOnly else self.ids
        return sorted(pool, key=lambda p: peerKadID(p) ^ target)[:count]


def percentile(values, q):
    """
    The C{q}-quantile (0..1) of C{values}, nearest rank.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _summary(samples):
    rounds = [s[0] for s in samples]
    rpcs = [s[1] for s in samples]
    times = [s[2] for s in samples]
    return {
        "rounds_median": statistics.median(rounds),
        "rounds_p95": percentile(rounds, 0.95),
        "rpcs_median": statistics.median(rpcs),
        "rpcs_p95": percentile(rpcs, 0.95),
        "time_median": statistics.median(times),
        "time_p95": percentile(times, 0.95),
    }


def runScenario(n, deadFraction=0.0, lookups=100, seed=1, **options):
    """
    Build a network of C{n} nodes, silence C{deadFraction} of them and run
    C{lookups} of each kind between random live nodes:

      - C{findpeer}: C{findPeer} of a random live node from another one,
        skipping sources that already hold the target in their table (those
        answer locally); success = the target's address found.
      - C{provide}: a random live node provides a random key (a FIND_NODE
        lookup to the k closest, then ADD_PROVIDER); also measured: the mean
        share of the true k closest live nodes it reached (accuracy).
      - C{findprovs}: another random live node looks for that key's
        providers (count=1); success = the provider found.

    @return: a list of row dicts.
    """
    net = SimNetwork(n, seed=seed, **options)
    net.buildTables()
    if deadFraction:
        net.kill(deadFraction)
    rng = random.Random(seed + 1)
    live = net.live()
    rows = []

    def measure(d, core):
        start = net.clock.seconds()
        before = core.stats["lookups"]
        try:
            result = net.run(d)
            ok = True
        except NotFound:
            result, ok = None, False
        lk = core.lastLookup if core.stats["lookups"] > before else None
        sample = (lk.rounds, lk.rpcs, net.clock.seconds() - start) if lk else (0, 0, 0.0)
        return ok, result, sample

    # findPeer
    samples, successes = [], 0
    for _ in range(lookups):
        while True:
            source, target = rng.sample(live, 2)
            if target not in net.nodes[source].table:
                break
        ok, info, sample = measure(net.nodes[source].findPeer(target), net.nodes[source])
        successes += ok and info.peerID == target
        samples.append(sample)
    rows.append(dict(n=n, dead=deadFraction, op="findpeer", lookups=lookups,
                     success=successes / lookups, **_summary(samples)))

    # provide + findProviders
    provSamples, findSamples, found, accuracy = [], [], 0, []
    for _ in range(lookups):
        provider, seeker = rng.sample(live, 2)
        key = b"\x12\x20" + rng.getrandbits(256).to_bytes(32, "big")
        core = net.nodes[provider]
        ok, told, sample = measure(core.provide(key), core)
        provSamples.append(sample)
        reached = {info.peerID for info in core.lastLookup.peers}
        truth = net.trueClosest(key, net.k)
        accuracy.append(len(reached & set(truth)) / len(truth))
        net.settle()
        seekerCore = net.nodes[seeker]
        ok, providers, sample = measure(seekerCore.findProviders(key, count=1), seekerCore)
        found += any(p.peerID == provider for p in providers or ())
        findSamples.append(sample)
    rows.append(dict(n=n, dead=deadFraction, op="provide", lookups=lookups,
                     success=statistics.mean(accuracy), **_summary(provSamples)))
    rows.append(dict(n=n, dead=deadFraction, op="findprovs", lookups=lookups,
                     success=found / lookups, **_summary(findSamples)))
    return rows
