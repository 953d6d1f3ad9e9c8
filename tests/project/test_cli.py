"""
tau project compile DIR.
"""

import io
import json
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.cli import main
from tests.processes import TAU, run
from tests.project.helpers import FIXTURES


class CompileCommandTests(SynchronousTestCase):
    def tau(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def test_tree(self):
        """
        A good repository: the compiled tree as JSON on stdout, exit 0.
        """
        status, out, err = self.tau("project", "compile", str(FIXTURES / "full"), "--cloud", "net.example")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(json.loads(out), json.loads((FIXTURES / "full.json").read_text()))

    def test_branch(self):
        status, out, _ = self.tau("project", "compile", str(FIXTURES / "shopfront"), "--branch", "dev")
        self.assertEqual(status, 0)
        self.assertEqual(json.loads(out)["branch"], "dev")

    def test_errors(self):
        """
        A broken repository: every error, one per line FILE:LINE: FIELD:
        message on stderr, nothing on stdout, exit 1.
        """
        status, out, err = self.tau("project", "compile", str(FIXTURES / "broken"))
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, (FIXTURES / "broken.errors").read_text())


class RealCommandTests(TestCase):
    timeout = 60

    def test_exitStatus(self):
        """
        The real command needs no node: exit 0 with JSON, exit 1 with errors.
        """

        async def go():
            status, out, err = await run(reactor, TAU + ["project", "compile", str(FIXTURES / "shopfront")])
            self.assertEqual(status, 0, err)
            self.assertEqual(json.loads(out)["project"], "QmQnBpGSSrWLdp3GGKkeqQZ5C1Ce55NSgDiKJhC9Wver7A")
            status, out, err = await run(reactor, TAU + ["project", "compile", str(FIXTURES / "broken")])
            self.assertEqual((status, out), (1, ""))
            self.assertEqual(len(err.splitlines()), 28)

        return Deferred.fromCoroutine(go())
