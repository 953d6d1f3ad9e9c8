"""
The CGI bridge against small shell scripts standing in for git
http-backend: headers parsed, bodies streamed both ways, a slow, chatty or
malformed backend answered 502 and killed, a departed client kills it.
"""

import io

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from tau.githost.cgi import MAX_HEADERS, BackendProtocol


class FakeRequest:
    """
    What the bridge uses of a twisted.web request.
    """

    def __init__(self):
        self.code = 200
        self.headers = Headers()
        self.written = []
        self.finished = False
        self.channel = object()
        self.producer = None
        self._finish = []
        self.wrote = Deferred()

    def setResponseCode(self, code):
        self.code = code

    def setHeader(self, name, value):
        self.headers.setRawHeaders(name, [value])

    def write(self, data):
        self.written.append(data)
        if not self.wrote.called:
            self.wrote.callback(None)

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def notifyFinish(self):
        d = Deferred()
        self._finish.append(d)
        return d

    def finish(self):
        self.finished = True
        for d in self._finish:
            d.callback(None)
        self._finish = []

    def goAway(self):
        for d in self._finish:
            d.errback(ConnectionError("gone"))
        self._finish = []

    def body(self):
        return b"".join(self.written)


def run(script, body=b"", timeout=30.0):
    request = FakeRequest()
    protocol = BackendProtocol(request, io.BytesIO(body), reactor, timeout)
    reactor.spawnProcess(protocol, "/bin/sh", ["sh", "-c", script], env={"PATH": "/usr/bin:/bin"},
                         childFDs={0: "w", 1: "r", 2: "r", 3: "r"})
    return request, protocol


class BackendTests(TestCase):
    timeout = 30

    async def test_streamedBothWays(self):
        body = bytes(range(256)) * 8192   # 2 MiB through stdin and back
        request, protocol = run("printf 'Status: 201 Created\\r\\nContent-Type: a/b\\r\\n\\r\\n'; cat", body)
        code, updates, error = await protocol.done
        self.assertEqual((code, error), (0, None))
        self.assertEqual(request.code, 201)
        self.assertEqual(request.headers.getRawHeaders(b"content-type"), [b"a/b"])
        self.assertEqual(request.body(), body)
        self.assertTrue(request.finished)
        self.assertIsNone(request.producer)

    async def test_updatesOnDescriptor3(self):
        request, protocol = run("printf 'a b c\\n' >&3; printf 'X: y\\n\\nok'")
        code, updates, error = await protocol.done
        self.assertEqual((code, updates, request.body()), (0, b"a b c\n", b"ok"))

    async def test_slow(self):
        request, protocol = run("exec sleep 30", timeout=0.2)
        code, updates, error = await protocol.done
        self.assertEqual(request.code, 502)
        self.assertIn(b"took more than 0.2 seconds", request.body())
        self.assertTrue(request.finished)

    async def test_malformedHeaders(self):
        request, protocol = run("printf 'no colon here\\n\\nbody'")
        code, updates, error = await protocol.done
        self.assertEqual(request.code, 502)
        self.assertIn(b"bad CGI header line", request.body())

    async def test_badStatus(self):
        request, protocol = run("printf 'Status: abc\\n\\n'")
        await protocol.done
        self.assertEqual(request.code, 502)

    async def test_headersAtTheLimit(self):
        """
        A header block of exactly C{MAX_HEADERS} bytes (then the blank line)
        is read; a longer one without an end is refused.
        """
        value = MAX_HEADERS - len("X: ")
        request, protocol = run(f"printf 'X: '; head -c {value} /dev/zero | tr '\\0' a; printf '\\n\\nbody'")
        await protocol.done
        self.assertEqual((request.code, request.body()), (200, b"body"))
        for script in (f"printf 'X: '; head -c {value + 1} /dev/zero | tr '\\0' a; printf '\\n\\nbody'",
                       f"head -c {MAX_HEADERS + 100} /dev/zero | tr '\\0' a; exec sleep 30"):
            request, protocol = run(script)
            code, updates, error = await protocol.done
            self.assertEqual(request.code, 502)
            self.assertIn(f"more than {MAX_HEADERS} bytes of headers".encode(), request.body())

    async def test_lingeringDescendant(self):
        """
        A descendant that keeps stdout and descriptor 3 open after the
        backend exited (a daemonized git gc) does not hold the answer.
        """
        started = reactor.seconds()
        request, protocol = run("printf 'X: y\\n\\nok'; sleep 30 & exit 0")
        code, updates, error = await protocol.done
        self.assertEqual((code, request.body()), (0, b"ok"))
        self.assertTrue(request.finished)
        self.assertLess(reactor.seconds() - started, 15)

    async def test_clientGone(self):
        request, protocol = run("printf 'X: y\\n\\nstart'; exec sleep 30")
        await request.wrote
        request.goAway()
        code, updates, error = await protocol.done
        self.assertEqual(error, "the client went away")


    async def test_connectionLost(self):
        """
        The client's connection lost mid-answer (its transport stops the
        request's producer) kills the backend: the request's producer is
        not the process itself, which cannot be stopped.
        """
        request, protocol = run("printf 'X: y\\n\\nstart'; exec sleep 30")
        await request.wrote
        started = reactor.seconds()
        request.producer.pauseProducing()
        request.producer.resumeProducing()
        request.producer.stopProducing()
        code, updates, error = await protocol.done
        self.assertEqual(error, "the client went away")
        self.assertLess(reactor.seconds() - started, 15)


class RunGitTests(TestCase):
    timeout = 30

    async def test_outputLimit(self):
        """
        Output of exactly C{limit} bytes is read; one more kills git.
        """
        from tau.githost.process import GitError, runGit
        code, out = await runGit(reactor, ["version"], limit=1000)
        self.assertTrue(out.startswith(b"git version"))
        exact = len(out)
        code, same = await runGit(reactor, ["version"], limit=exact)
        self.assertEqual(same, out)
        with self.assertRaises(GitError) as caught:
            await runGit(reactor, ["version"], limit=exact - 1)
        self.assertIn(f"more than {exact - 1} bytes", str(caught.exception))

    async def test_failure(self):
        from tau.githost.process import GitError, runGit
        with self.assertRaises(GitError) as caught:
            await runGit(reactor, ["rev-parse", "--git-dir"], cwd="/")
        self.assertIn("not a git repository", str(caught.exception))

    async def test_cancelKills(self):
        """
        Cancelling a run kills git and waits for it: nothing is left.
        """
        from tau.githost.process import runGit
        d = Deferred.fromCoroutine(runGit(reactor, ["hash-object", "--stdin"], timeout=60))
        # hash-object waits for stdin, which stays open
        d.cancel()
        from twisted.internet.defer import CancelledError
        with self.assertRaises(CancelledError):
            await d
