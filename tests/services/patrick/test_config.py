"""
The C{patrick} config section: defaults, values, the errors of each
field, and the section in a node config.
"""

from twisted.trial.unittest import TestCase

from tau.config import loadConfig
from tau.errors import ConfigError
from tau.services.patrick.config import PatrickConfig, PatrickSection


class PatrickConfigTests(TestCase):
    def test_defaults(self):
        config = PatrickConfig.check("f.yaml", None)
        self.assertEqual((config.httpListen, config.branches, config.maxBody, config.maxJobs),
                         ("tcp:0:interface=127.0.0.1", ("main", "master"), 1 << 20, 10_000))
        self.assertEqual((config.lease, config.jobTimeout, config.checkInterval, config.heartbeat, config.replicas),
                         (30.0, 3600.0, 5.0, 1.0, 1))

    def test_values(self):
        config = PatrickConfig.check("f.yaml", {"http-listen": "tcp:8080", "branches": [], "max-body": 1, "lease": 12,
                                                "job-timeout": 60, "replicas": 2, "max-log": 10})
        self.assertEqual((config.httpListen, config.branches, config.maxBody, config.lease, config.jobTimeout,
                          config.replicas, config.maxLog), ("tcp:8080", (), 1, 12.0, 60.0, 2, 10))
        self.assertEqual(PatrickSection().show(config)["branches"], [])

    def test_errors(self):
        for value, field, text in (
                ({"http-listen": "nope:1"}, "patrick.http-listen", "is not an endpoint string"),
                ({"branches": "main"}, "patrick.branches", "expected a list of branch names"),
                ({"branches": [""]}, "patrick.branches", "expected a list of branch names"),
                ({"max-body": 0}, "patrick.max-body", "expected a whole number above 0"),
                ({"max-jobs": True}, "patrick.max-jobs", "expected a whole number above 0"),
                ({"lease": 0}, "patrick.lease", "expected a positive number of seconds"),
                ({"heartbeat": "1s"}, "patrick.heartbeat", "expected a positive number of seconds"),
                ({"colour": 1}, "patrick.colour", "unknown field")):
            with self.assertRaises(ConfigError) as caught:
                PatrickConfig.check("f.yaml", value)
            self.assertIn(field, str(caught.exception))
            self.assertIn(text, str(caught.exception))

    def test_inANodeConfig(self):
        root = self.mktemp()
        config = loadConfig(shape="patrick", root=root)
        self.assertEqual(config.patrick, PatrickConfig())
