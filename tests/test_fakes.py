"""
The fakes of tau.fakes provide their interfaces (verifyObject), take what
the real implementations take, and behave as the tests that use them
expect.
"""

import inspect
import io
import os
import tarfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.interface import Method
from zope.interface.verify import verifyObject

from tau.fakes import DialError, FakeContent, FakeHost, FakeKVDB, FakePubSub, FakeRouting, fakeTNSClient
from tau.interfaces import IContent, IHost, IKVDB, IPubSub, IRouting, ITNSClient
from tau.host import Host
from tau.identity import PrivateKey
from tau.kad.network import DHTService
from tau.kvdb.service import KVDBService
from tau.kvdb.writers import NodeWriter
from tau.protocols.multistream import NegotiationFailed
from tau.pubsub.service import PubSubService
from tau.store import unixfs
from tau.store.content import BadInput, ContentService, NotFound, NotPinned
from tests.bitswap.fakes import MemoryBlockStore


def d(coroutine):
    return Deferred.fromCoroutine(coroutine)


class InterfaceTests(TestCase):
    def test_everyFakeProvidesItsInterface(self):
        for interface, fake in ((IHost, FakeHost(Clock())), (IContent, FakeContent()), (IRouting, FakeRouting()),
                                (IPubSub, FakePubSub()), (IKVDB, FakeKVDB()), (ITNSClient, fakeTNSClient(Clock()))):
            self.assertTrue(verifyObject(interface, fake))

    def test_sameSignatures(self):
        """The fakes' methods take the arguments of the real ones, by the same names."""
        def shape(f):
            return [(p.name, p.kind) for p in inspect.signature(f).parameters.values()]
        for real, fake, interface in ((Host, FakeHost, IHost), (ContentService, FakeContent, IContent),
                                      (DHTService, FakeRouting, IRouting), (PubSubService, FakePubSub, IPubSub),
                                      (KVDBService, FakeKVDB, IKVDB)):
            for name in interface.names():
                if isinstance(interface[name], Method):
                    self.assertEqual(shape(getattr(fake, name)), shape(getattr(real, name)), f"{fake.__name__}.{name}")


class FakeTNSClientTests(TestCase):
    async def test_pushFetchLookup(self):
        """
        The fake registry answers as tns does: a single leaf bare, several
        as a nested map, keys by prefix, and the http lookup over them.
        """
        tns = fakeTNSClient(Clock())
        await tns.push(["a", "b"], {"c": 1, "d": {"e": "x"}})
        self.assertEqual(await tns.fetch(["a", "b", "c"]), 1)
        self.assertEqual(await tns.fetch(["a"]), {"b": {"c": 1, "d": {"e": "x"}}})
        self.assertIsNone(await tns.fetch(["z"]))
        self.assertEqual(await tns.lookup(["a", "b"]), ["/a/b/c", "/a/b/d/e"])
        self.assertEqual(await tns.lookup(["a", ".*/e"], regex=True), ["/a/b/d/e"])
        self.assertEqual(await tns.list(1), [("a",)])
        self.assertIsNone(await tns.http("api.example.com", "/x"))


class FakeHostTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.network = {}
        self.a = FakeHost(self.clock, network=self.network)
        self.b = FakeHost(self.clock, network=self.network)

    def test_streamToAHandler(self):
        """A request and its answer, both ends half-closing, each side knowing the other."""
        seen = []

        async def echo(stream):
            seen.append(stream.remotePeer)
            data = await stream.readLP(100)
            stream.writeLP(data.upper())
            stream.closeWrite()
        self.b.setStreamHandler("/echo/1", echo)
        conns = []
        self.a.addConnectionObserver(conns.append)

        async def ask():
            stream = await self.a.newStream(self.b.peerID, ["/nope/1", "/echo/1"])
            self.assertEqual(stream.protocolID, "/echo/1")
            stream.writeLP(b"hi")
            stream.closeWrite()
            return await stream.readLP(100), await stream.readToEnd(10)
        self.assertEqual(self.successResultOf(d(ask())), (b"HI", b""))
        self.assertEqual(seen, [self.a.peerID])
        self.assertEqual(self.a.connectedPeers(), [self.b.peerID])
        self.assertEqual(self.b.connectedPeers(), [self.a.peerID])
        self.assertEqual([c.remotePeer for c in conns], [self.b.peerID])
        self.assertEqual(self.b.failures, [])

    def test_refusals(self):
        self.failureResultOf(d(self.a.newStream(self.b.peerID, ["/nope/1"])), NegotiationFailed)
        stranger = FakeHost(self.clock)
        self.failureResultOf(d(self.a.dial(stranger.peerID)), DialError)
        self.failureResultOf(d(self.a.dial(self.a.peerID)), DialError)
        self.failureResultOf(d(self.a.connect("/ip4/1.2.3.4/tcp/1")), DialError)
        conn = self.successResultOf(d(self.a.connect(f"/ip4/1.2.3.4/tcp/1/p2p/{self.b.peerID}")))
        self.assertEqual(conn.remotePeer, self.b.peerID)
        self.assertEqual(self.a.peerstore.addrs(self.b.peerID), ["/ip4/1.2.3.4/tcp/1"])

    def test_handlerFailureResetsTheStream(self):
        async def broken(stream):
            raise RuntimeError("broken")
        self.b.setStreamHandler("/broken/1", broken)
        stream = self.successResultOf(d(self.a.newStream(self.b.peerID, ["/broken/1"])))
        self.assertEqual(len(self.b.failures), 1)
        self.failureResultOf(d(stream.readLP(10)))

    def test_handlers(self):
        self.a.setStreamHandler("/x/1", None)
        self.assertEqual(self.a.protocols(), ["/x/1"])
        self.a.removeHandler("/x/1")
        self.assertEqual(self.a.protocols(), [])


class FakeContentTests(TestCase):
    """What the fake adds has the node's CIDs; reads, pins and errors as the service's."""

    async def real(self, entries=None, data=None):
        store = MemoryBlockStore()
        if entries is not None:
            return (await unixfs.importDirectory(store, entries, reactor)).cid
        return (await unixfs.importFile(store, data, reactor)).cid

    def test_addAndRead(self):
        async def t():
            content = FakeContent()
            data = os.urandom(600_000)
            entry = await content.add(data)
            self.assertEqual(entry.cid, await self.real(data=data))
            self.assertEqual(content.provided, [entry.cid])
            self.assertEqual(b"".join([x async for x in await content.cat(entry.cid, 10, 20)]), data[10:30])
            tree = [("a/b", b"x"), ("c", data), ("empty", None)]
            folder = await content.addFolder(tree)
            self.assertEqual(folder.cid, await self.real(entries=tree))
            self.assertEqual([n for n, _, _ in await content.ls(folder.cid)], ["a", "c", "empty"])
            tar = b"".join([x async for x in await content.get(folder.cid)])
            with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
                self.assertEqual(archive.extractfile(f"{unixfs.cidText(folder.cid)}/c").read(), data)
            again = await content.addTar(io.BytesIO(tar))
            self.assertEqual([n for n, _, _ in await content.ls(again.cid)], [unixfs.cidText(folder.cid)])
        return d(t())

    def test_pinsAndErrors(self):
        async def t():
            content = FakeContent()
            entry = await content.add(b"x" * 300_000, pin=False)
            self.assertEqual(await content.pin(entry.cid), 3)
            await content.unpin(entry.cid)
            with self.assertRaises(NotPinned):
                await content.unpin(entry.cid)
            self.assertEqual((await content.gc())[0], 3)
            self.assertFalse(await content.has(entry.cid))
            with self.assertRaises(NotFound):
                await content.cat(entry.cid)
            with self.assertRaises(BadInput):
                await content.cat("not a cid")
            with self.assertRaises(BadInput):
                await content.add(b"", chunker="rabin")
        return d(t())


class FakeRoutingTests(TestCase):
    def test_answers(self):
        routing = FakeRouting([0, RuntimeError("lookup failed")])
        self.assertEqual(self.successResultOf(routing.provide(b"k")), 0)
        self.failureResultOf(routing.provide(b"k"), RuntimeError)
        self.assertEqual(self.successResultOf(routing.provide(b"k")), 1)
        routing.providers[b"k"] = [("p1", []), ("p2", [])]
        self.assertEqual(self.successResultOf(routing.findProviders(b"k", 1)), [("p1", [])])
        self.failureResultOf(routing.findPeer("nobody"), LookupError)


class FakePubSubTests(TestCase):
    def test_publishValidateDeliver(self):
        pubsub = FakePubSub()
        sub = pubsub.subscribe("t")
        pubsub.addValidator("t", lambda m: m.data != b"bad")
        for data in (b"good", b"bad", b"fine"):
            self.successResultOf(d(pubsub.publish("t", data)))
        self.assertEqual(self.successResultOf(sub.next()).data, b"good")
        self.assertEqual(self.successResultOf(sub.next()).data, b"fine")
        self.assertEqual(len(pubsub.published), 3)
        sub.cancel()
        self.assertEqual(pubsub.subscriptions["t"], [])
        self.assertRaises(ValueError, pubsub.subscribe, "")


class FakeKVDBTests(TestCase):
    async def test_behaviour(self):
        kvdb = FakeKVDB()
        await kvdb.open("d")
        await kvdb.put("d", b"/a/1", b"x")
        await kvdb.put("d", "/a/2", b"y")
        await kvdb.put("d", b"/b", b"z")
        self.assertEqual(await kvdb.list("d", b"/a/"), [b"/a/1", b"/a/2"])
        self.assertEqual(await kvdb.list("d", "/a/", 1, True), [(b"/a/1", b"x")])
        await kvdb.delete("d", b"/a/1")
        self.assertIsNone(await kvdb.get("d", b"/a/1"))
        self.assertEqual(await kvdb.get("d", "/b"), b"z")
        self.assertEqual(kvdb.databases(), ["d"])

    async def test_writeIsOneChange(self):
        kvdb = FakeKVDB()
        replica = await kvdb.open("d")
        changes = []
        replica.onChange(changes.append)
        await kvdb.write("d", [(b"/a", b"1"), (b"/b", b"2")])
        self.assertEqual(changes, [replica])
        self.assertEqual(list(replica.heads.values()), [1])
        with self.assertRaises(ValueError):
            await kvdb.write("d", [(b"/a", b"1"), ("/a", None)])
        with self.assertRaises(KeyError):
            await kvdb.get("unopened", b"/a")

    async def test_writers(self):
        kvdb = FakeKVDB()
        w1, w2 = (NodeWriter(PrivateKey.generate().peerID()) for _ in range(2))
        replica = await kvdb.create("shop", [w1], quota=10)
        self.assertTrue(replica.name.startswith("shop@"))
        self.assertEqual(replica.quota, 10)
        self.assertEqual(await kvdb.writersOf(replica.name), [w1])
        await kvdb.addWriters(replica.name, [w2])
        self.assertEqual(await kvdb.writersOf(replica.name), [w1, w2])
        self.assertIsNone(await kvdb.writersOf("open"))
        self.assertEqual((await kvdb.serviceDatabase("tns", "keys")).name, "keys@service:tns")
