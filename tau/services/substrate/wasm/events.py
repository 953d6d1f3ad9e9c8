"""
The pubsub and p2p events (module C{taubyte/sdk}, the spec sheet's
sections 3b and 3c), as pkg/vm-low-orbit answers them: what a message
(L{PubsubMessage}) or a command (L{P2PCommand}) holds, and the host
functions that read them.

Every function answers C{ErrorEventNotFound} (1) for an unknown event id
and C{ErrorNilAddress} (4) for an event of another type (the HTTP host
functions answer 4 for these events, too).  Pointers are checked against
the guest's memory (3; 12 for a size out-parameter).
"""

import base64
import json
from dataclasses import dataclass

from tau.identity import PeerID
from tau.services.substrate.wasm import errno

PUBSUB_EVENT = 2
P2P_EVENT = 3

#: CIDv1 and the libp2p-key codec (0x72): the prefix of a peer's CID
PEER_CID_PREFIX = b"\x01\x72"


@dataclass(frozen=True)
class PubsubMessage:
    """
    @ivar topic: the pubsub topic, C{<hash>/<channel>}.
    @ivar data: the message's data (the envelope already opened).
    """

    topic: str
    data: bytes


class P2PCommand:
    """
    A p2p command as its function sees it.

    @ivar command: the command's name; a C{command} text in C{body}
        overrides it (as go's C{SetName}).
    @ivar body: the command's body (text keys): C{data} (bytes) is what
        C{getP2PEventData} gives (the whole body as JSON when it has no
        C{data}); C{protocol} what C{getP2PEventProtocol} gives.
    @ivar fromPeer: the remote peer (a L{tau.identity.PeerID}, or its text)
        or None.
    @ivar toPeer: this node's peer or None.
    @ivar maxResponse: the most bytes C{writeP2PResponse} takes.
    @ivar response: the bytes the guest answered, None until it does.
    """

    def __init__(self, command, body, fromPeer=None, toPeer=None, maxResponse=8 << 20):
        self.command = command
        self.body = dict(body or {})
        self.fromPeer = _peer(fromPeer)
        self.toPeer = _peer(toPeer)
        self.maxResponse = maxResponse
        self.response = None
        # what the Size calls computed, which the value calls write (go's
        # marshalledData and protocol)
        self._data = None
        self._protocol = ""


def _peer(peer):
    """
    C{peer} as a L{PeerID}.

    @raise InvalidKey: text that is not a peer ID.
    """
    return PeerID.fromString(peer) if isinstance(peer, str) else peer


def _goJson(value):
    """
    C{value} as go's C{encoding/json} sees it: bytes as base64 text, maps
    with text keys only.

    @raise TypeError: a value JSON cannot hold (go's marshal error).
    """
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a map with a key that is not text")
        return {k: _goJson(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_goJson(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"cannot marshal {type(value).__name__}")


def goJsonMarshal(value):
    """
    Go's C{json.Marshal}: keys sorted, no spaces, C{<>&} and U+2028/9
    escaped.

    @raise TypeError: as L{_goJson}; ValueError for NaN or infinities.
    """
    text = json.dumps(_goJson(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode("utf-8", "surrogateescape")


class _WrongEvent(Exception):
    def __init__(self, code):
        self.code = code


class EventAbi:
    """
    The pubsub and p2p host functions, bound to one instance's event table.
    """

    def __init__(self, events):
        self._events = events

    def _get(self, ev, kind):
        event = self._events.get(ev)
        if event is None:
            raise _WrongEvent(errno.EVENT_NOT_FOUND)
        if event.type != kind:
            raise _WrongEvent(errno.NIL_ADDRESS)
        return event

    # -- pubsub ---------------------------------------------------------------

    def _message(self, ev):
        return self._get(ev, PUBSUB_EVENT).message

    def getMessageDataSize(self, mem, ev, sizePtr):
        mem.writeU32(sizePtr, len(self._message(ev).data))
        return errno.NONE

    def getMessageData(self, mem, ev, bufPtr):
        mem.write(bufPtr, self._message(ev).data)
        return errno.NONE

    def _channel(self, ev):
        parts = self._message(ev).topic.split("/")
        if len(parts) != 2:
            return None
        return parts[1].encode("utf-8", "surrogateescape")

    def getMessageChannelSize(self, mem, ev, sizePtr):
        channel = self._channel(ev)
        if channel is None:
            return errno.CHANNEL_NOT_FOUND
        mem.writeU32(sizePtr, len(channel))
        return errno.NONE

    def getMessageChannel(self, mem, ev, bufPtr):
        channel = self._channel(ev)
        if channel is None:
            return errno.CHANNEL_NOT_FOUND
        mem.write(bufPtr, channel)
        return errno.NONE

    # -- p2p ------------------------------------------------------------------

    def _p2p(self, ev):
        return self._get(ev, P2P_EVENT).p2p

    def _command(self, ev):
        p2p = self._p2p(ev)
        if "command" in p2p.body:
            if not isinstance(p2p.body["command"], str):
                return None
            p2p.command = p2p.body["command"]
        return p2p.command.encode("utf-8", "surrogateescape")

    def getP2PEventCommandSize(self, mem, ev, sizePtr):
        command = self._command(ev)
        if command is None:
            return errno.P2P_COMMAND_NOT_FOUND
        mem.writeU32(sizePtr, len(command))
        return errno.NONE

    def getP2PEventCommand(self, mem, ev, bufPtr):
        command = self._command(ev)
        if command is None:
            return errno.P2P_COMMAND_NOT_FOUND
        mem.write(bufPtr, command)
        return errno.NONE

    def getP2PEventDataSize(self, mem, ev, sizePtr):
        p2p = self._p2p(ev)
        if "data" in p2p.body:
            data = p2p.body["data"]
            if not isinstance(data, (bytes, bytearray)):
                return errno.MARSHAL_DATA_FAILED
            p2p._data = bytes(data)
        else:
            try:
                p2p._data = goJsonMarshal(p2p.body)
            except (TypeError, ValueError):
                return errno.MARSHAL_DATA_FAILED
        mem.writeU32(sizePtr, len(p2p._data))
        return errno.NONE

    def getP2PEventData(self, mem, ev, bufPtr):
        # what the Size call cached; before it, go writes one zero byte
        data = self._p2p(ev)._data
        mem.write(bufPtr, b"\0" if data is None else data)
        return errno.NONE

    def getP2PEventProtocolSize(self, mem, ev, sizePtr):
        p2p = self._p2p(ev)
        protocol = p2p.body.get("protocol")
        if not isinstance(protocol, str):
            return errno.P2P_PROTOCOL_NOT_FOUND
        p2p._protocol = protocol
        mem.writeU32(sizePtr, len(protocol.encode("utf-8", "surrogateescape")))
        return errno.NONE

    def getP2PEventProtocol(self, mem, ev, bufPtr):
        protocol = self._p2p(ev)._protocol
        if not protocol:
            return errno.P2P_PROTOCOL_NOT_FOUND
        mem.write(bufPtr, protocol.encode("utf-8", "surrogateescape"))
        return errno.NONE

    def _peerCid(self, ev, which):
        peer = getattr(self._p2p(ev), which)
        return None if peer is None else PEER_CID_PREFIX + peer.toBytes()

    def _writePeer(self, mem, ev, ptr, which, missing):
        cid = self._peerCid(ev, which)
        if cid is None:
            return missing
        mem.write(ptr, cid)
        return errno.NONE

    def _peerSize(self, mem, ev, sizePtr, which, missing):
        cid = self._peerCid(ev, which)
        if cid is None:
            return missing
        mem.writeU32(sizePtr, len(cid))
        return errno.NONE

    def writeP2PResponse(self, mem, ev, bufPtr, bufSize):
        p2p = self._p2p(ev)
        mem.check(bufPtr, bufSize)
        if bufSize > p2p.maxResponse:
            return errno.P2P_SEND_FAILED
        p2p.response = mem.read(bufPtr, bufSize)
        return errno.NONE

    def functions(self):
        """
        C{(name, nparams, has result, callable(mem, *args))} for every
        pubsub and p2p host function.
        """
        table = [
            ("getMessageDataSize", 2, self.getMessageDataSize),
            ("getMessageData", 2, self.getMessageData),
            ("getMessageChannelSize", 2, self.getMessageChannelSize),
            ("getMessageChannel", 2, self.getMessageChannel),
            ("getP2PEventCommandSize", 2, self.getP2PEventCommandSize),
            ("getP2PEventCommand", 2, self.getP2PEventCommand),
            ("getP2PEventDataSize", 2, self.getP2PEventDataSize),
            ("getP2PEventData", 2, self.getP2PEventData),
            ("getP2PEventProtocolSize", 2, self.getP2PEventProtocolSize),
            ("getP2PEventProtocol", 2, self.getP2PEventProtocol),
            ("writeP2PResponse", 3, self.writeP2PResponse),
        ]
        # the go-sdk symbols also declare From/To Size functions the host
        # never exported; they are here so a guest importing them links
        for name, which, missing in (("From", "fromPeer", errno.P2P_FROM_NOT_FOUND), ("To", "toPeer", errno.P2P_TO_NOT_FOUND)):
            table.append((f"getP2PEvent{name}", 2, _bind(self._writePeer, which, missing)))
            table.append((f"getP2PEvent{name}Size", 2, _bind(self._peerSize, which, missing)))
        return [(name, n, True, _answering(fn)) for name, n, fn in table]


def _bind(method, which, missing):
    return lambda mem, ev, ptr: method(mem, ev, ptr, which, missing)


def _answering(fn):
    def call(mem, *args):
        try:
            return fn(mem, *args)
        except _WrongEvent as e:
            return e.code
    return call


def eventFunctions(instance):
    """
    The pubsub and p2p host functions of C{instance} (a
    L{tau.services.substrate.wasm.hostabi.PROVIDERS} entry).
    """
    return EventAbi(instance.events).functions()
