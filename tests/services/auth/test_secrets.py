"""
The master key in the node's root and what it seals.
"""

import os
import stat
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.services.auth.secrets import ADMIN_FILE, KEY_FILE, SealError, loadSecrets


class SecretsTests(TestCase):
    async def test_keyFileCreatedPrivateAndKept(self):
        folder = Path(self.mktemp()) / "auth"
        first = await loadSecrets(folder, reactor)
        self.assertEqual(stat.S_IMODE(os.stat(folder / KEY_FILE).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(folder).st_mode), 0o700)
        sealed = first.seal("hook secret", b"/hooks/h1")
        second = await loadSecrets(folder, reactor)
        self.assertEqual(second.open(sealed, b"/hooks/h1"), b"hook secret")
        self.assertEqual(first.adminToken(), second.adminToken())
        # the operator finds the admin credential beside the key
        self.assertEqual(stat.S_IMODE(os.stat(folder / ADMIN_FILE).st_mode), 0o600)
        self.assertEqual((folder / ADMIN_FILE).read_text(), first.adminToken() + "\n")

    async def test_sealedValues(self):
        secrets = await loadSecrets(Path(self.mktemp()), reactor)
        a, b = secrets.seal(b"x", b"k"), secrets.seal(b"x", b"k")
        self.assertNotEqual(a, b)  # a nonce per value
        with self.assertRaisesRegex(SealError, "does not open"):
            secrets.open(a, b"other record")
        altered = bytearray(a)
        altered[-1] ^= 1
        with self.assertRaisesRegex(SealError, "does not open"):
            secrets.open(bytes(altered), b"k")
        other = await loadSecrets(Path(self.mktemp()), reactor)
        with self.assertRaisesRegex(SealError, f"sealed under master key {secrets.fingerprint}, this node holds "
                                               f"{other.fingerprint}: every auth node of the cloud needs the same"):
            other.open(a, b"k")

    async def test_badKeyFile(self):
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / KEY_FILE).write_bytes(b"short")
        with self.assertRaisesRegex(ValueError, "expected a 32-byte key, found 5 bytes"):
            await loadSecrets(folder, reactor)
