"""
docs/embedding.tac, the embedding example, run for real under twistd.
"""

import json
import re
import signal
from pathlib import Path

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau import loadConfig
from tests.processes import REPO, TWISTD, environment, spawn, stopped

TAC = Path(REPO) / "docs" / "embedding.tac"
READY = re.compile(r"embedded tau node (12D3KooW\w+) listening: api port (\d+), p2p port (\d+); ready")


class EmbeddingExampleTests(TestCase):
    timeout = 120

    def test_tacRuns(self):
        """
        C{twistd -ny docs/embedding.tac} creates the node's root under
        C{$TAU_ROOT}, logs the node's PeerId and ports once ready, answers
        C{/api/v0/id} on that API port with that PeerId and the p2p address,
        and stops cleanly on SIGTERM.
        """

        async def go():
            work = Path(self.mktemp()).resolve()
            work.mkdir()
            root = work / "root"
            proc = spawn(
                reactor,
                TWISTD + ["-n", "--pidfile=", "-y", str(TAC)],
                cwd=str(work),
                env=environment(TAU_ROOT=str(root)),
            )
            self.addCleanup(stopped, proc)
            await proc.waitFor(b"; ready")
            match = READY.search(proc.output())
            self.assertIsNotNone(match, proc.output())
            peerID, port, p2p = match.group(1), int(match.group(2)), int(match.group(3))

            # The identity lives in the root the environment named.
            config = loadConfig(shape="full", root=root, create=False)
            self.assertEqual(str(config.peerID), peerID)
            self.assertEqual(config.apiFile.read_text().strip(), f"/ip4/127.0.0.1/tcp/{port}")

            response = await treq.post(f"http://127.0.0.1:{port}/api/v0/id", persistent=False)
            self.assertEqual(response.code, 200)
            body = json.loads(await response.content())
            self.assertEqual(body["ID"], peerID)
            self.assertIn(f"/ip4/127.0.0.1/tcp/{p2p}/p2p/{peerID}", body["Addresses"])

            proc.kill(signal.SIGTERM)
            await proc.ended()
            out = proc.output()
            # A .tac application stopped by SIGTERM: twistd shuts down
            # cleanly, then re-raises the signal on itself (since Twisted
            # 21.2), so the process ends "killed by SIGTERM", which service
            # managers read as a clean stop; an exit status of 0 is as good.
            self.assertIn((proc.status, proc.signal), [(0, None), (None, signal.SIGTERM)], out)
            self.assertIn("Server Shut Down", out)
            self.assertNotIn("Traceback", out)
            self.assertNotIn("Unhandled error", out)
            self.assertFalse(config.apiFile.exists(), "the API file outlived the node")

        return Deferred.fromCoroutine(go())
