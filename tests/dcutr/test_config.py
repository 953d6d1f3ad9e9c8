"""
The dcutr config section, and what the node builds from it.
"""

from pathlib import Path

import yaml
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tau import dcutr
from tau.config import loadConfig, publicView
from tau.dcutr.config import MAX_ATTEMPTS, DCUtRSection
from tau.errors import ConfigError


class DCUtRConfigTests(SynchronousTestCase):
    def load(self, value):
        path = Path(self.mktemp())
        path.write_text(yaml.safe_dump({"dcutr": value}))
        return loadConfig(shape="full", root=self.mktemp(), configFile=path)

    def test_defaults(self):
        config = loadConfig(shape="full", root=self.mktemp())
        self.assertEqual(config.dcutr, {"hole-punching": True, "attempts": 3, "timeout": 5.0})
        self.assertEqual(publicView(config)["dcutr"], DCUtRSection.defaults)

    def test_attemptsEdge(self):
        self.assertEqual(self.load({"attempts": MAX_ATTEMPTS}).dcutr["attempts"], MAX_ATTEMPTS)
        self.assertEqual(self.load({"attempts": 1}).dcutr["attempts"], 1)
        for bad in (0, MAX_ATTEMPTS + 1, True, 2.5):
            e = self.assertRaises(ConfigError, self.load, {"attempts": bad})
            self.assertEqual(e.field, "dcutr.attempts")

    def test_refused(self):
        for value, field in (
            ("yes", "dcutr"),
            ({"nope": 1}, "dcutr.nope"),
            ({"hole-punching": "yes"}, "dcutr.hole-punching"),
            ({"timeout": 0}, "dcutr.timeout"),
        ):
            e = self.assertRaises(ConfigError, self.load, value)
            self.assertEqual(e.field, field)

    def test_install(self):
        """
        The service gets the section's values; off, there is none.
        """
        reactor = MemoryReactorClock()
        service = dcutr.install(object(), reactor, options={"hole-punching": True, "attempts": 2, "timeout": 1.5})
        self.assertEqual((service.attempts, service.timeout, service.reachability()), (2, 1.5, "unknown"))
        self.assertIsNone(dcutr.install(object(), reactor, options={"hole-punching": False}))
