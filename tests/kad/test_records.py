"""
Tests for L{tau.kad.records}: provider records, values, validators.
"""

from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.kad.records import (
    HOUR,
    InvalidRecord,
    LimitExceeded,
    RecordStore,
    defaultValidators,
    pkKey,
    rfc3339,
    splitKey,
    validatePublicKeyRecord,
)
from tests.kad.helpers import peers

KEY = b"\x12\x20" + b"k" * 32
KEY2 = b"\x12\x20" + b"j" * 32


class ProviderTests(SynchronousTestCase):
    def setUp(self):
        self.store = RecordStore(":memory:", maxProvidersPerKey=3, maxRecordsPerPeer=2)
        self.a, self.b, self.c, self.d = peers(4)

    def test_addAndGet(self):
        self.store.addProvider(KEY, self.a, [b"/a1", b"/a2"], 10.0)
        self.store.addProvider(KEY, self.b, [b"/b"], 20.0)
        self.assertEqual(
            self.store.getProviders(KEY, 30.0), [(self.b, (b"/b",)), (self.a, (b"/a1", b"/a2"))]
        )
        self.assertEqual(self.store.getProviders(KEY2, 30.0), [])

    def test_expiry(self):
        """
        Records live C{provideValidity} (48 h by default), counted from the
        last time they were received; L{RecordStore.expire} deletes them.
        """
        self.store.addProvider(KEY, self.a, [b"/a"], 0.0)
        self.store.addProvider(KEY, self.b, [b"/b"], 0.0)
        self.store.addProvider(KEY, self.b, [b"/b"], 10 * HOUR)
        self.assertEqual(len(self.store.getProviders(KEY, 47 * HOUR)), 2)
        # b's addresses (received at 10 h) are past their 24 h TTL: ID only.
        self.assertEqual(self.store.getProviders(KEY, 48 * HOUR), [(self.b, ())])
        self.assertEqual(self.store.expire(48 * HOUR), 1)
        self.assertEqual(self.store.providerCount(), 1)
        self.assertEqual(self.store.expire(58 * HOUR), 1)
        self.assertEqual(self.store.providerCount(), 0)

    def test_configurableValidity(self):
        store = RecordStore(provideValidity=60.0, providerAddrTTL=30.0)
        store.addProvider(KEY, self.a, [b"/a"], 0.0)
        self.assertEqual(store.getProviders(KEY, 20.0), [(self.a, (b"/a",))])
        self.assertEqual(store.getProviders(KEY, 40.0), [(self.a, ())])
        self.assertEqual(store.getProviders(KEY, 60.0), [])

    def test_refreshKeepsAddresses(self):
        """
        A refresh without addresses keeps the ones stored.
        """
        self.store.addProvider(KEY, self.a, [b"/a"], 0.0)
        self.store.addProvider(KEY, self.a, [], 5.0)
        self.assertEqual(self.store.getProviders(KEY, 6.0), [(self.a, (b"/a",))])

    def test_perKeyLimit(self):
        """
        A key holds at most C{maxProvidersPerKey} live providers; those
        already there can refresh; room comes back as records expire.
        """
        for p in (self.a, self.b, self.c):
            self.store.addProvider(KEY, p, [b"/x"], 0.0)
        self.assertRaises(LimitExceeded, self.store.addProvider, KEY, self.d, [b"/x"], 1.0)
        self.store.addProvider(KEY, self.a, [b"/x"], 10 * HOUR)
        self.store.addProvider(KEY, self.d, [b"/x"], 49 * HOUR)
        self.assertEqual(len(self.store.getProviders(KEY, 49 * HOUR)), 2)

    def test_perPeerLimit(self):
        self.store.addProvider(KEY, self.a, [b"/x"], 0.0)
        self.store.addProvider(KEY2, self.a, [b"/x"], 0.0)
        self.assertRaises(LimitExceeded, self.store.addProvider, b"\x12\x01z", self.a, [b"/x"], 0.0)
        self.assertEqual(self.store.providerCount(self.a), 2)

    def test_ownRecordsUnlimited(self):
        """
        Our own records (C{limited=False}) are not held to the limits.
        """
        for i in range(5):
            self.store.addProvider(KEY, peers(1, seed=i + 10)[0], [b"/x"], 0.0, limited=False)
        self.assertEqual(len(self.store.getProviders(KEY, 1.0)), 5)

    def test_addressesBounded(self):
        store = RecordStore(maxAddrsPerProvider=2)
        store.addProvider(KEY, self.a, [b"/1", b"/2", b"/3"], 0.0)
        self.assertEqual(store.getProviders(KEY, 1.0), [(self.a, (b"/1", b"/2"))])

    def test_getLimit(self):
        store = RecordStore()
        for i, p in enumerate((self.a, self.b, self.c)):
            store.addProvider(KEY, p, [b"/x"], float(i))
        self.assertEqual([p for p, _ in store.getProviders(KEY, 5.0, limit=2)], [self.c, self.b])

    def test_survivesReopen(self):
        """
        A file-backed store keeps provider records, provided keys and values
        across a close and reopen.
        """
        path = self.mktemp()
        store = RecordStore(path)
        store.addProvider(KEY, self.a, [b"/a"], 0.0)
        store.addProvided(KEY2, 0.0)
        store.putValue(b"/pk/x", b"v", 0.0)
        store.close()
        again = RecordStore(path)
        self.addCleanup(again.close)
        self.assertEqual(again.getProviders(KEY, 1.0), [(self.a, (b"/a",))])
        self.assertEqual(again.provided(), [KEY2])
        self.assertEqual(again.getValue(b"/pk/x", 1.0), (b"v", 0.0))

    def test_providedDue(self):
        self.store.addProvided(KEY, 0.0)
        self.store.addProvided(KEY2, 10 * HOUR)
        # due: last provided before now - 22 h
        self.assertEqual(self.store.providedDue(5 * HOUR), [KEY])
        self.assertEqual(self.store.providedDue(11 * HOUR), [KEY, KEY2])
        self.store.removeProvided(KEY)
        self.assertEqual(self.store.providedDue(11 * HOUR), [KEY2])


def keyN(i):
    return b"\x12\x20" + i.to_bytes(32, "big")


class ProviderCapTests(SynchronousTestCase):
    """
    Other peers' provider records are capped in all, in rows and in bytes;
    a record beyond a cap evicts the oldest, never ours.
    """

    def setUp(self):
        self.peers = peers(6, seed=50)
        # Every record below: 34-byte key, 38-byte peer ID, one 3-byte
        # address with its length prefix.
        self.size = 34 + len(self.peers[0].toBytes()) + 1 + 3

    def fill(self, store, n, start=0.0):
        for i in range(n):
            self.assertEqual(store.addProvider(keyN(i), self.peers[i % 6], [b"/ab"], start + i), 0)

    def live(self, store, n):
        return [i for i in range(n) if store.getProviders(keyN(i), 100.0)]

    def test_rowCapEvictsOldest(self):
        store = RecordStore(maxProviderRecords=4)
        self.fill(store, 4)
        self.assertEqual(store.providerCount(), 4)
        self.assertEqual(store.addProvider(keyN(4), self.peers[4], [b"/ab"], 10.0), 1)
        self.assertEqual(self.live(store, 5), [1, 2, 3, 4])
        # A refresh of a record already there evicts nothing.
        self.assertEqual(store.addProvider(keyN(1), self.peers[1], [b"/ab"], 11.0), 0)
        self.assertEqual(store.addProvider(keyN(5), self.peers[5], [b"/ab"], 12.0), 1)
        self.assertEqual(self.live(store, 6), [1, 3, 4, 5])

    def test_byteCapEvictsOldest(self):
        store = RecordStore(maxProviderBytes=3 * self.size)
        self.fill(store, 3)
        self.assertEqual(store.providerCount(), 3)
        self.assertEqual(store.addProvider(keyN(3), self.peers[3], [b"/ab"], 10.0), 1)
        # One byte more than the room of one record: two go.
        self.assertEqual(store.addProvider(keyN(4), self.peers[4], [b"/abc"], 11.0), 2)
        self.assertEqual(self.live(store, 5), [3, 4])

    def test_recordOverByteCap(self):
        store = RecordStore(maxProviderBytes=self.size)
        self.fill(store, 1)
        self.assertRaises(LimitExceeded, store.addProvider, keyN(1), self.peers[1], [b"/abc"], 1.0)
        self.assertEqual(self.live(store, 2), [0])

    def test_ownRecordsNotCountedNorEvicted(self):
        store = RecordStore(maxProviderRecords=2)
        for i in range(3):
            store.addProvider(keyN(100 + i), self.peers[0], [], float(i), limited=False)
        self.fill(store, 2, start=10.0)
        self.assertEqual(store.addProvider(keyN(2), self.peers[2], [b"/ab"], 20.0), 1)
        self.assertEqual(self.live(store, 3), [1, 2])
        self.assertEqual(store.providerCount(self.peers[0]), 3)

    def test_expiryMakesRoom(self):
        store = RecordStore(maxProviderRecords=2, provideValidity=10.0)
        self.fill(store, 2)
        self.assertEqual(store.expire(10.5), 1)
        self.assertEqual(store.addProvider(keyN(2), self.peers[2], [b"/ab"], 10.5), 0)
        self.assertEqual(store.addProvider(keyN(3), self.peers[3], [b"/ab"], 10.6), 1)

    def test_totalsSurviveReopen(self):
        path = self.mktemp()
        store = RecordStore(path, maxProviderRecords=3)
        self.fill(store, 3)
        store.addProvider(keyN(100), self.peers[0], [], 0.0, limited=False)
        store.close()
        again = RecordStore(path, maxProviderRecords=3)
        self.addCleanup(again.close)
        self.assertEqual(again.addProvider(keyN(3), self.peers[3], [b"/ab"], 10.0), 1)
        self.assertEqual(self.live(again, 4), [1, 2, 3])

    def test_storeFromBeforeTheCaps(self):
        """
        A store written before the caps (no C{own} column) opens, counts
        its records and evicts them.
        """
        import sqlite_utils

        path = self.mktemp()
        db = sqlite_utils.Database(path)
        db["providers"].create(
            {"key": bytes, "peer": bytes, "addrs": bytes, "received": float, "expires": float}, pk=("key", "peer")
        )
        db["providers"].insert(
            {"key": keyN(0), "peer": self.peers[0].toBytes(), "addrs": b"\x03/ab", "received": 0.0, "expires": 999.0}
        )
        db.close()
        store = RecordStore(path, maxProviderRecords=1)
        self.addCleanup(store.close)
        self.assertEqual(self.live(store, 1), [0])
        self.assertEqual(store.addProvider(keyN(1), self.peers[1], [b"/ab"], 1.0), 1)
        self.assertEqual(self.live(store, 2), [1])


class ValueStoreTests(SynchronousTestCase):
    def test_ageAndLimit(self):
        store = RecordStore(maxValues=1, maxRecordAge=100.0)
        store.putValue(b"/pk/a", b"1", 0.0)
        store.putValue(b"/pk/a", b"2", 10.0)
        self.assertEqual(store.getValue(b"/pk/a", 50.0), (b"2", 10.0))
        self.assertRaises(LimitExceeded, store.putValue, b"/pk/b", b"1", 20.0)
        self.assertIsNone(store.getValue(b"/pk/a", 110.0))
        self.assertEqual(store.expire(110.0), 1)
        store.putValue(b"/pk/b", b"1", 120.0)

    def test_rfc3339(self):
        self.assertEqual(rfc3339(86400.25), "1970-01-02T00:00:00.250000Z")


class ValidatorTests(SynchronousTestCase):
    def setUp(self):
        self.key = PrivateKey.generate()
        self.peer = self.key.peerID()

    def test_pkKeyFormat(self):
        """
        The key is C{/pk/} followed by the binary peer ID, as go builds it.
        """
        self.assertEqual(pkKey(self.peer), b"/pk/" + self.peer.toBytes())

    def test_pkValid(self):
        validatePublicKeyRecord(pkKey(self.peer), self.key.publicKey().toProtobuf())

    def test_pkWrongKey(self):
        other = PrivateKey.generate().publicKey().toProtobuf()
        self.assertRaises(InvalidRecord, validatePublicKeyRecord, pkKey(self.peer), other)

    def test_pkGarbage(self):
        self.assertRaises(InvalidRecord, validatePublicKeyRecord, pkKey(self.peer), b"garbage")
        self.assertRaises(
            InvalidRecord, validatePublicKeyRecord, b"/pk/notapeer", self.key.publicKey().toProtobuf()
        )
        self.assertRaises(InvalidRecord, validatePublicKeyRecord, b"/ipns/x", b"")

    def test_registry(self):
        """
        The registry maps namespaces to C{(validate, select)}; for /pk/ any
        valid value is as good as another.
        """
        validators = defaultValidators()
        self.assertEqual(set(validators), {"pk"})
        pk = validators["pk"]
        value = self.key.publicKey().toProtobuf()
        self.assertEqual(pk.select(pkKey(self.peer), [value, value]), 0)
        self.assertGreater(pk.maxSize, 1024)

    def test_splitKey(self):
        self.assertEqual(splitKey(b"/pk/abc/def"), ("pk", b"abc/def"))
        for bad in (b"pk/x", b"/pk", b"//x", b"/\xff/x"):
            self.assertRaises(InvalidRecord, splitKey, bad)
