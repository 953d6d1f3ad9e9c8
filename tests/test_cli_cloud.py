"""
tau cloud keygen|admit: a cloud's key and the admissions a node's config
takes.
"""

import os
import stat
from pathlib import Path

import yaml
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.config import loadConfig
from tau.errors import ConfigError
from tests.processes import TAU, run


class CloudCommandTests(TestCase):
    async def test_keygenAdmitAndLoad(self):
        """
        A key made by keygen signs an admission that a node's config
        accepts (cloud.key, cloud.admission) and that names the node and
        its services; the same admission is refused for another node.
        """
        folder = Path(self.mktemp())
        folder.mkdir()
        keyFile = folder / "cloud.key"
        status, out, err = await run(reactor, TAU + ["cloud", "keygen", str(keyFile)])
        self.assertEqual(status, 0, err)
        cloudID = out.strip()
        self.assertTrue(cloudID.startswith("12D3KooW"))
        self.assertEqual(stat.S_IMODE(os.stat(keyFile).st_mode), 0o600)
        status, out, err = await run(reactor, TAU + ["cloud", "keygen", str(keyFile)])
        self.assertEqual(status, 1)
        self.assertIn("exists", err)

        root = Path(self.mktemp())
        node = loadConfig(shape="full", root=root)
        status, out, err = await run(reactor, TAU + ["cloud", "admit", str(node.peerID), "--key", str(keyFile), "--service", "tns", "--service", "auth"])
        self.assertEqual(status, 0, err)
        config = folder / "cloud.yaml"
        config.write_text(yaml.safe_dump({"cloud": {"key": cloudID, "admission": out.strip()}}))
        loaded = loadConfig(shape="full", root=root, configFile=config)
        self.assertEqual(str(loaded.cloud["key"]), cloudID)
        self.assertEqual(loaded.cloud["admission"].services, ("auth", "tns"))
        self.assertEqual(loaded.cloud["admission"].node, node.peerID)
        e = self.assertRaises(ConfigError, loadConfig, shape="full", root=Path(self.mktemp()), configFile=config)
        self.assertIn("not this node", str(e))

        status, out, err = await run(reactor, TAU + ["cloud", "admit", "nope", "--key", str(keyFile), "--service", "tns"])
        self.assertEqual(status, 1)
        self.assertIn("peer ID", err)
