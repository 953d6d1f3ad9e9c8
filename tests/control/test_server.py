"""
The control API's resource (tau.control.server): a full disk met anywhere
in a command is the store-full answer (507), not a 500.
"""

import sqlite3
from types import SimpleNamespace

from tau.control.server import ControlResource
from tau.store.content import ContentService
from tests.control.test_intake import IntakeCase, head


class _FullIndex:
    """A block store whose SQLite index finds the disk full."""

    async def pins(self):
        raise sqlite3.OperationalError("database or disk is full")

    async def gc(self, budget):
        raise OSError(28, "No space left on device")


class DiskFullTests(IntakeCase):
    def test_fullDiskIsStoreFull(self):
        """SQLite's "database or disk is full" and ENOSPC are answered 507, as the store answers a full disk."""
        node = SimpleNamespace(content=ContentService(SimpleNamespace(blocks=_FullIndex()), reactor=None))
        for command in (b"pin/ls", b"repo/gc"):
            channel, transport = self.connect(resource=ControlResource(node))
            channel.dataReceived(head(command, 0))
            self.assertEqual(self.status(transport), 507)
            message = self.message(transport)
            self.assertTrue(message.startswith(command.decode() + ": the disk is full ("), message)
            self.assertTrue(message.endswith("nothing stored is lost"), message)
