"""
The C{auth} config section: defaults and the errors of each field.
"""

from twisted.trial.unittest import TestCase

from tau.errors import ConfigError
from tau.services.auth.config import AuthConfig


class AuthConfigTests(TestCase):
    def test_defaults(self):
        config = AuthConfig.check("f.yaml", None)
        self.assertEqual(config.httpListen, "tcp:0:interface=127.0.0.1")
        self.assertEqual(config.githubAPI, "https://api.github.com")
        self.assertEqual(config.webhookURL, "")
        self.assertEqual(config.maxBody, 1 << 20)
        self.assertEqual(config.providerTimeout, 10.0)
        self.assertEqual((config.gitListen, config.gitURL, config.gitRoot, config.gitMaxBody, config.gitTimeout,
                          config.gitMaxProcesses, config.gitPublicRead),
                         ("tcp:0:interface=127.0.0.1", "", "", 256 << 20, 600.0, 16, False))

    def test_values(self):
        config = AuthConfig.check("f.yaml", {
            "http-listen": "tcp:8443:interface=0.0.0.0", "github-api": "http://127.0.0.1:9/",
            "webhook-url": "https://hooks.example.com/github/", "max-body": 1, "provider-timeout": 2})
        self.assertEqual((config.httpListen, config.githubAPI, config.webhookURL, config.maxBody, config.providerTimeout),
                         ("tcp:8443:interface=0.0.0.0", "http://127.0.0.1:9/", "https://hooks.example.com/github/", 1, 2.0))

    def test_gitValues(self):
        config = AuthConfig.check("f.yaml", {
            "git-listen": "", "git-url": "https://git.example.com/", "git-root": "/srv/git", "git-max-body": 1,
            "git-timeout": 5, "git-max-processes": 2, "git-public-read": True})
        self.assertEqual((config.gitListen, config.gitURL, config.gitRoot, config.gitMaxBody, config.gitTimeout,
                          config.gitMaxProcesses, config.gitPublicRead),
                         ("", "https://git.example.com/", "/srv/git", 1, 5.0, 2, True))

    def assertError(self, value, text):
        with self.assertRaises(ConfigError) as caught:
            AuthConfig.check("f.yaml", value)
        self.assertEqual(str(caught.exception), text)

    def test_errors(self):
        self.assertError([], "f.yaml: auth: expected a mapping with http-listen, github-api, webhook-url, max-body, provider-timeout, git-listen, git-url, git-root, git-max-body, git-timeout, git-max-processes, git-public-read")
        self.assertError({"port": 1}, "f.yaml: auth.port: unknown field (expected: http-listen, github-api, webhook-url, max-body, provider-timeout, git-listen, git-url, git-root, git-max-body, git-timeout, git-max-processes, git-public-read)")
        self.assertError({"http-listen": "bogus:1"}, "f.yaml: auth.http-listen: 'bogus:1' is not an endpoint string (Unknown endpoint type: 'bogus')")
        self.assertError({"http-listen": 80}, "f.yaml: auth.http-listen: expected an endpoint string such as tcp:8443:interface=127.0.0.1")
        self.assertError({"github-api": "ftp://x"}, "f.yaml: auth.github-api: expected an http:// or https:// URL, found 'ftp://x'")
        self.assertError({"webhook-url": "x"}, "f.yaml: auth.webhook-url: expected an http:// or https:// URL, found 'x'")
        self.assertError({"max-body": 0}, "f.yaml: auth.max-body: expected a whole number of bytes above 0, found 0")
        self.assertError({"max-body": True}, "f.yaml: auth.max-body: expected a whole number of bytes above 0, found True")
        self.assertError({"provider-timeout": 0}, "f.yaml: auth.provider-timeout: expected a positive number of seconds, found 0")
        self.assertError({"git-listen": "bogus:1"}, "f.yaml: auth.git-listen: 'bogus:1' is not an endpoint string (Unknown endpoint type: 'bogus')")
        self.assertError({"git-url": "git://x"}, "f.yaml: auth.git-url: expected an http:// or https:// URL, found 'git://x'")
        self.assertError({"git-root": 3}, "f.yaml: auth.git-root: expected text (a path), found 3")
        self.assertError({"git-max-body": -1}, "f.yaml: auth.git-max-body: expected a whole number of bytes above 0, found -1")
        self.assertError({"git-timeout": "x"}, "f.yaml: auth.git-timeout: expected a positive number of seconds, found 'x'")
        self.assertError({"git-max-processes": 0}, "f.yaml: auth.git-max-processes: expected a whole number above 0, found 0")
        self.assertError({"git-public-read": "yes"}, "f.yaml: auth.git-public-read: expected true or false, found 'yes'")
