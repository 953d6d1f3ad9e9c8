"""
C{tau run FILE.wasm --call EXPORT}: one HTTP function run locally, without a
node, its response printed.
"""

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.processes import TAU, run
from tests.services.substrate.test_wasm import GUEST


class RunTests(TestCase):
    timeout = 60

    def module(self):
        path = Path(self.mktemp())
        path.write_text(GUEST)
        return str(path)

    def test_echo(self):
        """
        The request comes from --method, --path, --header and --body; the
        status line, the headers and the body are printed.
        """
        async def go():
            status, out, err = await run(reactor, TAU + [
                "run", self.module(), "--call", "echo", "--method", "PUT", "--path", "/p?q=1",
                "--header", "X-Name: n", "--body", "data"])
            self.assertEqual((status, err), (0, ""))
            self.assertEqual(out, "201 Created\nX-Out: yes\n\nPUT example.com /p n 1 q\0 data")
        return Deferred.fromCoroutine(go())

    def test_trap(self):
        """
        A function that traps prints 500.
        """
        async def go():
            status, out, err = await run(reactor, TAU + ["run", self.module(), "--call", "boom"])
            self.assertEqual((status, out), (0, "500 Internal Server Error\n\n"))
        return Deferred.fromCoroutine(go())

    def test_timeout(self):
        """
        A function that loops prints 504 after --timeout.
        """
        async def go():
            status, out, err = await run(reactor, TAU + ["run", self.module(), "--call", "spin", "--timeout", "0.1"])
            self.assertEqual((status, out), (0, "504 Gateway Timeout\n\n"))
        return Deferred.fromCoroutine(go())

    def test_badHeader(self):
        """
        A --header without a colon is a one-line usage error.
        """
        async def go():
            status, out, err = await run(reactor, TAU + ["run", self.module(), "--call", "echo", "--header", "nocolon"])
            self.assertEqual((status, out), (1, ""))
            self.assertEqual(err, "tau: invalid --header 'nocolon': expected KEY:VALUE\n")
        return Deferred.fromCoroutine(go())

    def test_notAModule(self):
        """
        A file that is not a module is a one-line error.
        """
        async def go():
            path = Path(self.mktemp())
            path.write_bytes(b"not wasm")
            status, out, err = await run(reactor, TAU + ["run", str(path), "--call", "x"])
            self.assertEqual((status, out), (1, ""))
            self.assertTrue(err.startswith(f"tau: {path} is not a valid module: "), err)
            self.assertEqual(len(err.splitlines()), 1, err)
        return Deferred.fromCoroutine(go())


class EventRunTests(TestCase):
    timeout = 60

    def module(self, text):
        path = Path(self.mktemp())
        path.write_text(text)
        return str(path)

    def test_p2p(self):
        """
        --p2p COMMAND --data D sends a p2p command; what the function
        answers is printed.
        """
        from tests.services.substrate.test_triggers import ECHO

        async def go():
            status, out, err = await run(reactor, TAU + ["run", self.module(ECHO), "--call", "handle", "--p2p", "ping",
                                                         "--data", "hello"])
            self.assertEqual((status, out, err), (0, "echo:hello", ""))
        return Deferred.fromCoroutine(go())

    def test_pubsub(self):
        """
        --pubsub CHANNEL --data D sends a pubsub message: nothing is printed;
        a function that traps exits 1, saying so.
        """
        from tests.services.substrate.test_events import GUEST as EVENTS

        async def go():
            path = self.module(EVENTS)
            status, out, err = await run(reactor, TAU + ["run", path, "--call", "message", "--pubsub", "orders", "--data", "x"])
            self.assertEqual((status, out, err), (0, "", ""))
            status, out, err = await run(reactor, TAU + ["run", path, "--call", "boom", "--pubsub", "orders"])
            self.assertEqual((status, out), (1, ""))
            self.assertRegex(err, r"^tau: function \S+ trapped\n$")
            status, out, err = await run(reactor, TAU + ["run", path, "--call", "boom", "--pubsub", "/"])
            self.assertEqual((status, out), (1, ""))
            self.assertTrue(err.startswith("tau: invalid --pubsub: a channel of 1 to 512 characters"), err)
        return Deferred.fromCoroutine(go())
