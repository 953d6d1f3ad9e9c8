"""
The autonat config field.
"""

from pathlib import Path

import yaml
from twisted.trial.unittest import SynchronousTestCase

from tau.autonat.config import AutoNATSection
from tau.config import loadConfig, publicView
from tau.errors import ConfigError


class AutoNATConfigTests(SynchronousTestCase):
    def load(self, value):
        path = Path(self.mktemp())
        path.write_text(yaml.safe_dump({"autonat": value}))
        return loadConfig(shape="full", root=self.mktemp(), configFile=path)

    def test_defaults(self):
        config = loadConfig(shape="full", root=self.mktemp())
        self.assertEqual(
            config.autonat,
            {"service": True, "allow-private": False, "reachability": "auto", "boot-delay": 15.0, "auto-relay": True},
        )
        self.assertEqual(publicView(config)["autonat"], AutoNATSection.defaults)

    def test_someKeysKeepTheOthers(self):
        config = self.load({"allow-private": True, "boot-delay": 1})
        self.assertEqual(config.autonat, {**AutoNATSection.defaults, "allow-private": True, "boot-delay": 1})

    def test_refused(self):
        for value, field in (
            ("yes", "autonat"),
            ({"nope": 1}, "autonat.nope"),
            ({"service": "yes"}, "autonat.service"),
            ({"reachability": "maybe"}, "autonat.reachability"),
            ({"boot-delay": -1}, "autonat.boot-delay"),
            ({"auto-relay": 1}, "autonat.auto-relay"),
        ):
            e = self.assertRaises(ConfigError, self.load, value)
            self.assertEqual(e.field, field)
