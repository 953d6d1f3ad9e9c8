"""
Pubsub messages and RPCs: the protobuf of libp2p/specs pubsub/README.md as
plain objects, StrictSign signing and verification, message ids, and the
limits tau keeps on what peers send.

L{decodeRPC} turns one length-prefixed frame into an L{RPC}; a frame that
is not a valid protobuf, or breaks a count limit, raises L{RPCError} (the
sender is dropped).  The messages it carries are still unchecked wire
messages: L{checkMessage} verifies one (StrictSign) and raises
L{InvalidMessage}, which only rejects that message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from tau.identity import InvalidKey, PeerID, PublicKey
from tau.pb import rpc_pb2

FLOODSUB = "/floodsub/1.0.0"
MESHSUB_10 = "/meshsub/1.0.0"
MESHSUB_11 = "/meshsub/1.1.0"
#: What we offer and serve, best first.
PROTOCOLS = [MESHSUB_11, MESHSUB_10, FLOODSUB]
GOSSIP_PROTOCOLS = (MESHSUB_11, MESHSUB_10)

#: The prefix of the signed bytes (the spec's "libp2p-pubsub:").
SIGNING_PREFIX = b"libp2p-pubsub:"

#: Largest RPC frame read or written (go's default).
MAX_RPC = 1 << 20
#: Largest message payload we publish or accept (leaves room for the
#: envelope inside one frame).
MAX_MESSAGE_DATA = MAX_RPC - 4096
#: Longest topic name accepted.
MAX_TOPIC_LENGTH = 1024
#: Most subscription changes, messages and control entries in one RPC.
MAX_SUBSCRIPTIONS = 2048
MAX_MESSAGES = 1024
MAX_CONTROL_ENTRIES = 4096
#: Most message ids in one IHAVE or IWANT that are looked at (the rest are
#: ignored, as the spec's MaxIHaveLength says).
MAX_IDS = 5000
#: Longest message id accepted in IHAVE/IWANT.
MAX_ID_LENGTH = 256
#: Most PX peers looked at in one PRUNE.
MAX_PX = 16
#: Longest signed peer record accepted in PX.
MAX_RECORD = 8192
#: The seqno length StrictSign peers use (js rejects any other).
SEQNO_LENGTH = 8


class RPCError(ValueError):
    """
    An RPC frame that is malformed or breaks a limit: the peer is dropped.
    """


class InvalidMessage(ValueError):
    """
    A message that fails StrictSign or the limits: it is rejected, and the
    peer that forwarded it penalised.
    """


class Message:
    """
    One pubsub message.

    @ivar topic: the topic (text).
    @ivar data: the payload (bytes).
    @ivar source: the L{PeerID} that signed it (the wire's C{from}).
    @ivar seqno: its sequence number (8 bytes, big-endian).
    @ivar msgID: its message id (bytes).
    @ivar receivedFrom: the peer we got it from, None for our own.
    """

    __slots__ = ("topic", "data", "source", "seqno", "signature", "key", "msgID", "receivedFrom", "_wire", "_publicKey")

    def __init__(self, topic, data, source, seqno, signature=None, key=None, msgID=b"", receivedFrom=None):
        self.topic = topic
        self.data = data
        self.source = source
        self.seqno = seqno
        self.signature = signature
        self.key = key
        self.msgID = msgID
        self.receivedFrom = receivedFrom
        self._wire = None
        self._publicKey = None

    def toProtobuf(self):
        msg = rpc_pb2.Message(topic=self.topic, data=self.data, seqno=self.seqno)
        setattr(msg, "from", self.source.toBytes())
        if self.signature is not None:
            msg.signature = self.signature
        if self.key is not None:
            msg.key = self.key
        return msg

    def wire(self):
        """
        The protobuf to forward (kept, so forwarding does not rebuild it).
        """
        if self._wire is None:
            self._wire = self.toProtobuf()
        return self._wire

    def __repr__(self):
        return f"<Message {self.topic!r} from {self.source} seqno {self.seqno.hex()} {len(self.data)} bytes>"


@dataclass
class Prune:
    topic: str
    #: C{(PeerID, signedPeerRecord bytes or None)} pairs.
    peers: list = field(default_factory=list)
    #: seconds, or None when not given (v1.0 peers).
    backoff: int | None = None


@dataclass
class RPC:
    """
    One decoded RPC.

    @ivar subscriptions: C{(subscribe, topic)} pairs.
    @ivar messages: wire messages (C{rpc_pb2.Message}), unchecked.
    @ivar ihave: C{(topic, [msgID])} pairs.
    @ivar iwant: message ids.
    @ivar graft: topics.
    @ivar prune: L{Prune}s.
    """

    subscriptions: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    ihave: list = field(default_factory=list)
    iwant: list = field(default_factory=list)
    graft: list = field(default_factory=list)
    prune: list = field(default_factory=list)

    def empty(self):
        return not (self.subscriptions or self.messages or self.hasControl())

    def hasControl(self):
        return bool(self.ihave or self.iwant or self.graft or self.prune)


def topicName(value):
    """
    A topic as text, or None when it is missing, not UTF-8 or too long.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_TOPIC_LENGTH:
        return None
    return value


def _ids(values):
    out = []
    for value in values[:MAX_IDS]:
        if 0 < len(value) <= MAX_ID_LENGTH:
            out.append(bytes(value))
    return out


def decodeRPC(data):
    """
    Parse one RPC frame.  Entries with a bad topic are skipped; counts over
    the limits, or a frame that is not an RPC, raise L{RPCError}.
    """
    if len(data) > MAX_RPC:
        raise RPCError(f"RPC of {len(data)} bytes (at most {MAX_RPC})")
    pb = rpc_pb2.RPC()
    try:
        pb.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as e:
        raise RPCError(f"not a pubsub RPC: {e}") from None
    if len(pb.subscriptions) > MAX_SUBSCRIPTIONS:
        raise RPCError(f"{len(pb.subscriptions)} subscriptions in one RPC (at most {MAX_SUBSCRIPTIONS})")
    if len(pb.publish) > MAX_MESSAGES:
        raise RPCError(f"{len(pb.publish)} messages in one RPC (at most {MAX_MESSAGES})")
    rpc = RPC()
    for sub in pb.subscriptions:
        topic = topicName(sub.topicid)
        if topic is not None:
            rpc.subscriptions.append((bool(sub.subscribe), topic))
    rpc.messages = list(pb.publish)
    if pb.HasField("control"):
        control = pb.control
        entries = len(control.ihave) + len(control.iwant) + len(control.graft) + len(control.prune) + len(control.idontwant)
        if entries > MAX_CONTROL_ENTRIES:
            raise RPCError(f"{entries} control entries in one RPC (at most {MAX_CONTROL_ENTRIES})")
        for ihave in control.ihave:
            topic = topicName(ihave.topicID)
            if topic is not None:
                rpc.ihave.append((topic, _ids(ihave.messageIDs)))
        for iwant in control.iwant:
            rpc.iwant.extend(_ids(iwant.messageIDs))
        del rpc.iwant[MAX_IDS:]
        for graft in control.graft:
            topic = topicName(graft.topicID)
            if topic is not None:
                rpc.graft.append(topic)
        for prune in control.prune:
            topic = topicName(prune.topicID)
            if topic is None:
                continue
            peers = []
            for info in prune.peers[:MAX_PX]:
                try:
                    peer = PeerID.fromBytes(info.peerID)
                except (InvalidKey, ValueError):
                    continue
                record = info.signedPeerRecord if info.HasField("signedPeerRecord") else None
                if record is not None and len(record) > MAX_RECORD:
                    record = None
                peers.append((peer, record))
            backoff = prune.backoff if prune.HasField("backoff") else None
            rpc.prune.append(Prune(topic, peers, backoff))
    return rpc


def encodeRPC(rpc):
    """
    The wire bytes of an L{RPC} whose C{messages} are L{Message}s or wire
    messages.
    """
    pb = rpc_pb2.RPC()
    for subscribe, topic in rpc.subscriptions:
        pb.subscriptions.add(subscribe=subscribe, topicid=topic)
    for message in rpc.messages:
        pb.publish.append(message.wire() if isinstance(message, Message) else message)
    if rpc.hasControl():
        control = pb.control
        for topic, ids in rpc.ihave:
            control.ihave.add(topicID=topic, messageIDs=ids)
        if rpc.iwant:
            control.iwant.add(messageIDs=rpc.iwant)
        for topic in rpc.graft:
            control.graft.add(topicID=topic)
        for prune in rpc.prune:
            entry = control.prune.add(topicID=prune.topic)
            if prune.backoff is not None:
                entry.backoff = prune.backoff
            for peer, record in prune.peers:
                info = entry.peers.add(peerID=peer.toBytes())
                if record is not None:
                    info.signedPeerRecord = record
    return pb.SerializeToString(deterministic=True)


# message ids


def goMsgID(message):
    """
    go-libp2p-pubsub's default id: C{from || seqno}.
    """
    return message.source.toBytes() + message.seqno


def jsMsgID(message):
    """
    js @libp2p/gossipsub's id: C{protobuf(public key) || seqno}.
    """
    key = message.key
    if key is None:
        key = message.source.extractPublicKey().toProtobuf()
    return bytes(key) + message.seqno


def idForms(msgID):
    """
    C{msgID} and what it would be under the other of go's and js's id
    functions (both derive from the signer's key and the seqno), so gossip
    from a peer that numbers messages the other way is not taken for news.
    """
    forms = [msgID]
    if len(msgID) <= SEQNO_LENGTH:
        return forms
    head, seqno = msgID[:-SEQNO_LENGTH], msgID[-SEQNO_LENGTH:]
    # go -> js: an identity multihash "00 <len> key" holds the key itself
    if len(head) > 2 and head[0] == 0 and head[1] == len(head) - 2:
        forms.append(head[2:] + seqno)
    # js -> go: the peer ID of the key
    elif len(head) <= MAX_KEY_FORM:
        try:
            forms.append(PeerID.fromPublicKey(PublicKey.fromProtobuf(head)).toBytes() + seqno)
        except (InvalidKey, ValueError):
            pass
    return forms


#: Longest key (protobuf) tried by L{idForms}.
MAX_KEY_FORM = 4096


# signing


def _signedBytes(pb):
    unsigned = rpc_pb2.Message()
    unsigned.CopyFrom(pb)
    unsigned.ClearField("signature")
    unsigned.ClearField("key")
    return SIGNING_PREFIX + unsigned.SerializeToString(deterministic=True)


def signMessage(privateKey, topic, data, seqno, msgID=goMsgID):
    """
    A new L{Message} from us, signed (StrictSign).  The key goes along only
    when our peer ID does not inline it.
    """
    source = privateKey.peerID()
    message = Message(topic, data, source, seqno)
    pb = message.toProtobuf()
    message.signature = privateKey.sign(_signedBytes(pb))
    if source.extractPublicKey() is None:
        message.key = privateKey.publicKey().toProtobuf()
    message.msgID = msgID(message)
    return message


def parseMessage(pb, receivedFrom, maxData=MAX_MESSAGE_DATA, msgID=goMsgID):
    """
    The cheap half of L{checkMessage}: the fields StrictSign needs are there
    and well formed, and the signer's key is known; the message id is
    computed.  The signature is not checked yet (L{verifyMessage}).

    @raise InvalidMessage: no or a bad topic, payload too large, no C{from},
        C{seqno} or signature, no usable key, or a key that is not
        C{from}'s.
    """
    topic = topicName(pb.topic) if pb.HasField("topic") else None
    if topic is None:
        raise InvalidMessage("message without a valid topic")
    if len(pb.data) > maxData:
        raise InvalidMessage(f"message of {len(pb.data)} bytes (at most {maxData})")
    if not pb.HasField("from"):
        raise InvalidMessage("unsigned message (no from)")
    if not pb.HasField("seqno") or len(pb.seqno) != SEQNO_LENGTH:
        raise InvalidMessage(f"message without an {SEQNO_LENGTH}-byte seqno")
    if not pb.HasField("signature") or not pb.signature:
        raise InvalidMessage("unsigned message (no signature)")
    try:
        source = PeerID.fromBytes(getattr(pb, "from"))
    except (InvalidKey, ValueError) as e:
        raise InvalidMessage(f"bad from: {e}") from None
    try:
        if pb.HasField("key"):
            key = PublicKey.fromProtobuf(pb.key)
            if not source.matches(key):
                raise InvalidMessage(f"the key is not the key of {source}")
        else:
            key = source.extractPublicKey()
            if key is None:
                raise InvalidMessage(f"no key for {source}")
    except InvalidMessage:
        raise
    except (InvalidKey, ValueError) as e:
        raise InvalidMessage(f"bad key: {e}") from None
    message = Message(
        topic,
        bytes(pb.data),
        source,
        bytes(pb.seqno),
        bytes(pb.signature),
        bytes(pb.key) if pb.HasField("key") else None,
        receivedFrom=receivedFrom,
    )
    message._wire = pb
    message._publicKey = key
    message.msgID = msgID(message)
    return message


def verifyMessage(message):
    """
    Check the signature of a message from L{parseMessage}.

    @raise InvalidMessage: when it does not verify.
    """
    if not message._publicKey.verify(message.signature, _signedBytes(message.wire())):
        raise InvalidMessage(f"bad signature from {message.source}")


def checkMessage(pb, receivedFrom, maxData=MAX_MESSAGE_DATA, msgID=goMsgID):
    """
    Check a wire message under StrictSign and return it as a L{Message}.

    @raise InvalidMessage: see L{parseMessage}, or a bad signature.
    """
    message = parseMessage(pb, receivedFrom, maxData, msgID)
    verifyMessage(message)
    return message
