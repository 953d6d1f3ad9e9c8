"""
A function's build (L{tau.services.substrate.assets}): a raw module or
Taubyte's C{artifact.zip}, bounded whatever the zip claims; fetched through
the node's content.
"""

from hypothesis import given, strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.cids import cidText
from tau.fakes import FakeContent
from tau.services.substrate.assets import ZIP_MAGIC, AssetError, assetCID, fetchBuild, moduleOf
from tests.services.substrate.helpers import zipped

MODULE = b"\0asm\x01\0\0\0"


class ModuleOfTests(SynchronousTestCase):
    def test_raw(self):
        self.assertEqual(moduleOf(MODULE, 100), MODULE)

    def test_zipEntries(self):
        """
        The module is C{main.wasm} of the zip, else C{artifact.wasm}.
        """
        self.assertEqual(moduleOf(zipped({"artifact.wasm": b"\0asm2", "main.wasm": MODULE}), 100), MODULE)
        self.assertEqual(moduleOf(zipped({"artifact.wasm": MODULE}), 100), MODULE)

    def assertRefused(self, data, words, limit=100):
        e = self.assertRaises(AssetError, moduleOf, data, limit)
        self.assertEqual(e.status, 500)
        self.assertIn(words, str(e))

    def test_refused(self):
        self.assertRefused(b"hello", "neither a WebAssembly module nor a zip")
        self.assertRefused(zipped({"x.wasm": MODULE}), "holds none of main.wasm, artifact.wasm")
        self.assertRefused(zipped({"main.wasm": b"not a module"}), "main.wasm in the build zip is not a WebAssembly module")
        self.assertRefused(ZIP_MAGIC + b"\0" * 40, "the build zip does not read")

    def test_zipLimit(self):
        """
        A module of exactly the limit is read out of a zip; one byte more
        is refused.
        """
        module = MODULE + b"\0" * 92
        self.assertEqual(moduleOf(zipped({"main.wasm": module}), 100), module)
        self.assertRefused(zipped({"main.wasm": module + b"\0"}), "over 100 bytes")

    def test_zipBomb(self):
        """
        A zip whose header lies about the size of a module that inflates
        far past the limit stops at the limit.
        """
        data = bytearray(zipped({"main.wasm": MODULE + b"\0" * (50 << 20)}))
        self.assertLess(len(data), 1 << 20)
        # claim a small size in both headers (little-endian at +22 in the
        # local header and +24 in the central directory)
        local = data.find(b"PK\x03\x04")
        data[local + 22:local + 26] = (10).to_bytes(4, "little")
        central = data.find(b"PK\x01\x02")
        data[central + 24:central + 28] = (10).to_bytes(4, "little")
        e = self.assertRaises(AssetError, moduleOf, bytes(data), 1 << 20)
        self.assertEqual(e.status, 500)

    @given(st.binary(max_size=300))
    def test_anyBytes(self, tail):
        """
        Whatever follows a zip's magic, the answer is a module or an
        L{AssetError}, never another exception.
        """
        try:
            moduleOf(ZIP_MAGIC + tail, 1000)
        except AssetError:
            pass

    def test_assetCID(self):
        self.assertEqual(assetCID("bafkreiabc"), "bafkreiabc")
        for bad in [None, 3, "", "a/b", "x" * 201, {"cid": "b"}]:
            self.assertIsNone(assetCID(bad))


class FetchBuildTests(TestCase):
    async def test_fetch(self):
        """
        The bytes of a build; exactly the limit is read, one byte more is
        refused (500); a build whose blocks are not here is 503.
        """
        content = FakeContent()
        cid = cidText((await content.add(b"x" * 100)).cid)
        self.assertEqual(await fetchBuild(content, cid, 100), b"x" * 100)
        e = await self.assertFailure(Deferred.fromCoroutine(fetchBuild(content, cid, 99)), AssetError)
        self.assertEqual(e.status, 500)
        missing = cidText((await FakeContent().add(b"elsewhere")).cid)
        e = await self.assertFailure(Deferred.fromCoroutine(fetchBuild(content, missing, 100)), AssetError)
        self.assertEqual(e.status, 503)
        folder = cidText((await content.addFolder([("a.txt", b"a")])).cid)
        e = await self.assertFailure(Deferred.fromCoroutine(fetchBuild(content, folder, 100)), AssetError)
        self.assertEqual(e.status, 500)
