"""
The control API's intake (tau.control.intake) on a StringTransport and a
MemoryReactorClock: what is refused before a body is read, the store-full
answer while spooling, and the deadlines on headers and bodies.
"""

import errno
import json
import os

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from tau.control import intake, server  # noqa: F401  (server registers the commands)
from tau.control.intake import SPOOL_MIN, ControlChannel, ControlSite


class _Echo(Resource):
    """Answers how many body bytes the command got."""

    isLeaf = True

    def render_POST(self, request):
        args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        return json.dumps({"Got": len(request.content.read()), "Args": args}).encode()


class _Transport(StringTransport):
    writeClosed = False
    aborted = False

    def loseWriteConnection(self):
        self.writeClosed = True

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()


class _FullFile:
    """A spool file on a disk that is full."""

    closed = False

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self.closed = True


def head(command, length=None, extra=b"", method=b"POST"):
    lines = [b"%s /api/v0/%s?arg=x HTTP/1.1" % (method, command), b"Host: 127.0.0.1"]
    if length == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


class IntakeCase(TestCase):
    def connect(self, free=1 << 40, spool=None, resource=None):
        """A connected channel: (clock, channel, transport); spooled files listed in self.spooled."""
        self.clock = MemoryReactorClock()
        spoolDir = self.mktemp()
        os.makedirs(spoolDir)
        self.spooled = []

        def temporaryFile(**kw):
            self.assertEqual(kw["dir"], spoolDir)
            f = spool() if spool is not None else open(os.path.join(spoolDir, f"spool{len(self.spooled)}"), "w+b")
            self.spooled.append(f)
            return f
        self.patch(intake.tempfile, "TemporaryFile", temporaryFile)
        self.patch(intake, "freeBytes", lambda path: free)
        site = ControlSite(resource or _Echo(), spoolDir, self.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
        transport = _Transport()
        channel.makeConnection(transport)
        self.addCleanup(lambda: [f.close() for f in self.spooled])
        return channel, transport

    def status(self, transport):
        data = transport.value()
        return int(data.split(b" ", 2)[1]) if data else None

    def message(self, transport):
        headers, body = transport.value().split(b"\r\n\r\n", 1)
        if b"\r\nTransfer-Encoding: chunked" in headers:
            chunks = []
            while True:
                size, body = body.split(b"\r\n", 1)
                if not int(size, 16):
                    break
                chunks.append(body[: int(size, 16)])
                body = body[int(size, 16) + 2:]
            body = b"".join(chunks)
        return json.loads(body)["Message"]


class RefusedBeforeTheBodyTests(IntakeCase):
    def test_originRefusedBeforeItsBody(self):
        """
        A request from a web page with a 100 MiB body is answered 403 as
        soon as its headers are in; its body is thrown away, never spooled,
        and the connection cut after lingerTimeout.
        """
        channel, transport = self.connect()
        channel.dataReceived(head(b"add", 100 << 20, b"Origin: http://evil.example\r\n"))
        self.assertEqual(self.status(transport), 403)
        self.assertTrue(transport.writeClosed)
        answered = transport.value()
        for _ in range(16):
            channel.dataReceived(b"x" * 65536)
        self.assertEqual((transport.value(), self.spooled), (answered, []))
        self.clock.advance(ControlChannel.lingerTimeout - 0.01)
        self.assertFalse(transport.aborted)
        self.clock.advance(0.01)
        self.assertTrue(transport.aborted)

    def test_commandAndMethodBeforeTheBody(self):
        """Unknown commands (404) and other methods than POST (405, Allow: POST) are refused before the body."""
        for command, method, status in [(b"nope", b"POST", 404), (b"add", b"PUT", 405)]:
            channel, transport = self.connect()
            channel.dataReceived(head(command, 1 << 20, method=method))
            self.assertEqual((self.status(transport), self.spooled), (status, []))
        self.assertIn(b"\r\nAllow: POST\r\n", transport.value())

    def test_bodyForACommandThatTakesNone(self):
        """
        A body sent to a command that takes none is refused (400) before it
        is read, sized or chunked; an empty one (Content-Length: 0) is not.
        """
        for length in (1, SPOOL_MIN, "chunked"):
            channel, transport = self.connect()
            channel.dataReceived(head(b"repo/gc", length))
            self.assertEqual((self.status(transport), self.spooled), (400, []))
            self.assertEqual(self.message(transport), "repo/gc takes no request body")
        channel, transport = self.connect()
        channel.dataReceived(head(b"repo/gc", 0))
        self.assertEqual(self.status(transport), 200)

    def test_bodyAgainstTheFreeSpace(self):
        """
        A body exactly as big as the free space of the data folder is
        spooled; one byte more is answered 507 (the store-full answer)
        before a byte is spooled.
        """
        free = 3 * SPOOL_MIN
        channel, transport = self.connect(free=free)
        channel.dataReceived(head(b"add", free))
        self.assertEqual((transport.value(), len(self.spooled)), (b"", 1))
        channel, transport = self.connect(free=free)
        channel.dataReceived(head(b"add", free + 1))
        self.assertEqual((self.status(transport), self.spooled), (507, []))
        self.assertIn("the disk is full", self.message(transport))

    def test_diskFullWhileSpooling(self):
        """
        A chunked body that meets a full disk while it is spooled is
        answered 507 at once and its file dropped.
        """
        channel, transport = self.connect(spool=_FullFile)
        channel.dataReceived(head(b"add", "chunked") + b"1000\r\n" + b"x" * 0x1000 + b"\r\n")
        self.assertEqual(self.status(transport), 507)
        self.assertIn("the disk is full", self.message(transport))
        self.assertTrue(self.spooled[0].closed)
        self.assertTrue(transport.writeClosed)

    def test_acceptedBodyReachesTheCommand(self):
        """A body that passes every check reaches the command whole, small (in memory) or spooled."""
        for size, spooled in ((SPOOL_MIN - 1, 0), (SPOOL_MIN, 1)):
            channel, transport = self.connect()
            channel.dataReceived(head(b"add", size) + b"y" * size)
            self.assertEqual(self.status(transport), 200)
            self.assertTrue(transport.value().endswith(b'{"Got": %d, "Args": {"arg": ["x"]}}' % size))
            self.assertEqual(len(self.spooled), spooled)

    def test_bodyNeverParsedAsAForm(self):
        """
        A body sent as a form (curl --data-binary) reaches the command as
        bytes; arguments come from the query string alone.
        """
        channel, transport = self.connect()
        body = b"arg=y&pin=false&" + b"\xff" * 100
        channel.dataReceived(head(b"add", len(body), b"Content-Type: application/x-www-form-urlencoded\r\n") + body)
        self.assertEqual(self.status(transport), 200)
        self.assertTrue(transport.value().endswith(b'{"Got": %d, "Args": {"arg": ["x"]}}' % len(body)))


class DeadlineTests(IntakeCase):
    def test_headersInTime(self):
        """Headers sent slowly but complete just inside headerTimeout are served."""
        channel, transport = self.connect()
        lines = head(b"add", 0).split(b"\r\n")
        step = (ControlChannel.headerTimeout - 0.01) / (len(lines) - 1)
        for line in lines[:-1]:
            channel.dataReceived(line + b"\r\n")
            self.clock.advance(step)
        channel.dataReceived(lines[-1])
        self.assertEqual(self.status(transport), 200)

    def test_slowlorisHeaders(self):
        """
        Headers that keep trickling in (a byte a second, each resetting the
        idle timer) are cut at headerTimeout with a 408.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"POST /api/v0/add HTTP/1.1\r\n")
        for _ in range(int(ControlChannel.headerTimeout) - 1):
            self.clock.advance(1)
            channel.dataReceived(b"X")
        self.clock.advance(ControlChannel.headerTimeout - int(ControlChannel.headerTimeout) + 0.99)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.01)
        self.assertEqual(self.status(transport), 408)
        self.assertTrue(transport.writeClosed)

    def test_idleConnectionClosed(self):
        """A connection that sends nothing is closed after the site's idleTimeout."""
        channel, transport = self.connect()
        self.clock.advance(ControlSite.idleTimeout - 0.01)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.01)
        self.assertTrue(transport.disconnecting)

    def test_bodyKeptComing(self):
        """
        A body that brings exactly bodyMinBytes each bodyWindow goes on; a
        window with one byte less cuts it (408), as does a stalled one.
        """
        channel, transport = self.connect()
        channel.dataReceived(head(b"add", 1 << 20))
        for _ in range(3):
            channel.dataReceived(b"z" * ControlChannel.bodyMinBytes)
            self.clock.advance(ControlChannel.bodyWindow)
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"z" * (ControlChannel.bodyMinBytes - 1))
        self.clock.advance(ControlChannel.bodyWindow)
        self.assertEqual(self.status(transport), 408)
        self.assertEqual(self.message(transport), "the request body came too slowly")

    def test_stalledBody(self):
        channel, transport = self.connect()
        channel.dataReceived(head(b"add", "chunked") + b"10\r\n" + b"z" * 16 + b"\r\n")
        self.clock.advance(ControlChannel.bodyWindow - 0.01)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.01)
        self.assertEqual(self.status(transport), 408)
