"""
L{tau.bitswap.network.MessageReader}: the inbound side of a bitswap stream.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tau import cids
from tau.bitswap import message
from tau.bitswap.message import Entry, Message, MessageError
from tau.bitswap.network import MessageReader
from tau.protocols import varint


class _Stream:
    """
    A stream transport that records what the reader does to it.
    """

    def __init__(self):
        self.paused = False
        self.pauses = 0
        self.aborted = False
        self.closed = False

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.paused = False

    def abortConnection(self):
        self.aborted = True

    def loseConnection(self):
        self.closed = True


def _frame(m):
    data = message.encode(m)
    return varint.encode(len(data)) + data


def _messages(n):
    out = []
    for i in range(n):
        data = bytes([i]) * (100 + 37 * i)
        c = cids.makeCID(data)
        out.append(Message(entries=[Entry(c)], blocks=[(cids.prefixOf(c), data)]))
    return out


class MessageReaderTests(SynchronousTestCase):
    def setUp(self):
        self.received = []
        self.errors = []
        self.busy = None
        self.reader = MessageReader("peer", self.handle, lambda peer, e: self.errors.append((peer, e)), maxMessage=4096)
        self.stream = _Stream()
        self.reader.makeConnection(self.stream)

    def handle(self, peer, m):
        self.received.append((peer, m))
        return self.busy

    @given(st.lists(st.integers(1, 50), max_size=40))
    def test_anyChunking(self, cuts):
        """
        Messages arrive whole and in order however the bytes are cut, and
        the data of their blocks are views of one buffer per message.
        """
        self.setUp()
        sent = _messages(4) + [Message()]
        wire = b"".join(_frame(m) for m in sent)
        pos = 0
        for cut in cuts:
            self.reader.dataReceived(wire[pos : pos + cut])
            pos += cut
        self.reader.dataReceived(wire[pos:])
        self.assertEqual([m for _, m in self.received], sent)
        self.assertEqual({p for p, _ in self.received}, {"peer"})
        for _, m in self.received:
            for _, data in m.blocks:
                self.assertIsInstance(data, memoryview)
        self.assertEqual(self.errors, [])
        self.assertFalse(self.stream.paused)

    def test_busyHandlerPausesTheStream(self):
        """
        While a message is being handled the stream is paused, and what
        still arrives waits, in order, until the handler is done.
        """
        sent = _messages(3)
        self.busy = Deferred()
        self.reader.dataReceived(_frame(sent[0]) + _frame(sent[1])[:10])
        self.assertEqual([m for _, m in self.received], sent[:1])
        self.assertTrue(self.stream.paused)
        self.reader.dataReceived(_frame(sent[1])[10:] + _frame(sent[2]))
        self.assertEqual(len(self.received), 1)
        busy, self.busy = self.busy, None
        busy.callback(None)
        self.assertEqual([m for _, m in self.received], sent)
        self.assertFalse(self.stream.paused)

    def test_coroutineHandler(self):
        """
        A coroutine handler that finishes at once does not pause the
        stream; one that waits does.
        """
        gate = Deferred()

        async def handle(peer, m):
            self.received.append(m)
            if len(self.received) == 2:
                await gate

        self.reader.handle = handle
        sent = _messages(3)
        self.reader.dataReceived(b"".join(_frame(m) for m in sent))
        self.assertEqual(self.received, sent[:2])
        self.assertEqual(self.stream.pauses, 1)
        gate.callback(None)
        self.assertEqual(self.received, sent)

    def test_cleanEnd(self):
        """
        The peer's end of the stream between messages closes our side,
        once the messages before it are handled.
        """
        self.busy = Deferred()
        self.reader.dataReceived(_frame(_messages(1)[0]))
        self.reader.readConnectionLost()
        self.assertFalse(self.stream.closed)
        self.busy.callback(None)
        self.assertTrue(self.stream.closed)
        self.assertFalse(self.stream.aborted)

    def test_endInsideAMessage(self):
        """
        A stream that ends inside a message is aborted, and the partial
        message is not handled.
        """
        self.reader.dataReceived(_frame(_messages(1)[0])[:-1])
        self.reader.readConnectionLost()
        self.assertTrue(self.stream.aborted)
        self.assertEqual(self.received, [])

    def test_oversized(self):
        """
        A length over the limit is an error as soon as it is read: the
        stream is aborted and nothing is buffered for it.
        """
        self.reader.dataReceived(varint.encode(4097))
        self.assertTrue(self.stream.aborted)
        self.assertEqual(len(self.errors), 1)
        self.assertIsInstance(self.errors[0][1], MessageError)
        self.reader.dataReceived(b"x" * 5000)
        self.assertEqual(self.received, [])

    def test_malformed(self):
        """
        A message that does not decode is an error; what follows it is not
        read.
        """
        self.reader.dataReceived(b"\x02\xff\xff" + _frame(_messages(1)[0]))
        self.assertEqual(len(self.errors), 1)
        self.assertIsInstance(self.errors[0][1], MessageError)
        self.assertTrue(self.stream.aborted)
        self.assertEqual(self.received, [])

    def test_handlerFails(self):
        """
        A handler that fails, at once or later, is an error too.
        """
        self.busy = Deferred()
        self.reader.dataReceived(_frame(_messages(1)[0]))
        self.busy.errback(ValueError("no"))
        self.assertEqual(len(self.errors), 1)
        self.assertIsInstance(self.errors[0][1], ValueError)
        self.assertTrue(self.stream.aborted)


class _BudgetStream(_Stream):
    """
    A stream with a receive budget of C{room} bytes, as a yamux stream has.
    """

    def __init__(self, room):
        super().__init__()
        self.room = room
        self.reserved = 0

    def reserve(self, n):
        if self.reserved + n > self.room:
            self.abortConnection()
            return False
        self.reserved += n
        return True

    def release(self, n):
        self.reserved -= n


class MessageReaderBudgetTests(SynchronousTestCase):
    def setUp(self):
        self.received = []
        self.errors = []
        self.reader = MessageReader("peer", lambda peer, m: self.received.append(m), lambda peer, e: self.errors.append(e))

    def connect(self, room):
        stream = _BudgetStream(room)
        self.reader.makeConnection(stream)
        return stream

    def test_messageReservedWhenItsLengthArrives(self):
        """
        A message's whole length is reserved as soon as the length arrives
        (its buffer is made then), exactly the budget is allowed, and it is
        released once the message is handed on.
        """
        frame = _frame(_messages(1)[0])
        length = len(frame) - len(varint.encode(len(frame) - 1))
        stream = self.connect(room=length)
        self.reader.dataReceived(frame[:3])
        self.assertEqual(stream.reserved, length)
        self.reader.dataReceived(frame[3:])
        self.assertEqual((len(self.received), stream.reserved, stream.aborted), (1, 0, False))

    def test_overBudgetBeforeTheBuffer(self):
        """
        A length one past the budget resets the stream before any buffer
        is made for it.
        """
        frame = _frame(_messages(1)[0])
        length = len(frame) - len(varint.encode(len(frame) - 1))
        stream = self.connect(room=length - 1)
        self.reader.dataReceived(frame[:3])
        self.assertTrue(stream.aborted)
        self.assertIsNone(self.reader._body)
        self.assertEqual(stream.reserved, 0)

    def test_heldBytesReserved(self):
        """
        What arrives while a message is being handled is reserved until it
        is read.
        """
        busy = Deferred()
        self.reader.handle = lambda peer, m: busy
        stream = self.connect(room=1 << 20)
        first, second = (_frame(m) for m in _messages(2))
        self.reader.dataReceived(first)
        self.reader.dataReceived(second)
        self.assertEqual(stream.reserved, len(second))
        self.reader.handle = lambda peer, m: self.received.append(m)
        busy.callback(None)
        self.assertEqual((len(self.received), stream.reserved), (1, 0))
