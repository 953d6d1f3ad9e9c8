"""
libp2p TLS 1.3 (C{/tls/1.0.0}, libp2p/specs tls/tls.md).

Each side presents a fresh self-signed certificate whose key has nothing to
do with the host key; the host key rides in the certificate's libp2p
extension (OID 1.3.6.1.4.1.53594.1.1) together with the host key's signature
of C{"libp2p-tls-handshake:" || SubjectPublicKeyInfo}.  There is no CA: OpenSSL
is told to accept whatever chain it gets, and after the handshake the chain is
checked the libp2p way (L{tau.protocols.tlscert.verifyCertificate}).

TLS starts in the middle of an existing byte stream (after multistream-select
on TCP, inside a pnet channel, on a relayed yamux stream), so the layer is a
L{twisted.protocols.tls.TLSMemoryBIOProtocol} that is handed the lower
transport by L{TLSSecurity.secure} rather than a listening TLS port.

Wiring a layer (see L{TLSSecurity.secure})::

    layer, whenSecure = security.secure(lowerTransport, isClient=True,
                                        protocol=upper, initialBytes=rest)
    # from now on the lower protocol forwards everything to layer:
    #     dataReceived(data)   -> layer.dataReceived(data)
    #     connectionLost(why)  -> layer.connectionLost(why)
    peer = await whenSecure   # the verified remote PeerID

C{upper} gets C{makeConnection(layer)} once the peer is verified; it writes
plaintext to C{layer} and may register a producer on it.
"""

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHandshakeListener,
    ILoggingContext,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from tau.protocols.tlscert import TLSError, TLSVerifyError, makeCertificate, verifyCertificate
from tau.ratelog import PeerLog, connectionKey

log = Logger()
peerLog = PeerLog(log)

PROTOCOL_ID = "/tls/1.0.0"
ALPN_LIBP2P = b"libp2p"
# How long a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT = 10.0

class TLSHandshakeTimeout(TLSError):
    """
    The remote side did not complete the handshake in time.
    """


class TLSHandshakeFailed(TLSError):
    """
    The TLS handshake failed or the connection was lost during it.
    """


# --- the OpenSSL context ---


def _acceptChain(connection, x509Cert, errnum, depth, ok):
    # No CA: OpenSSL reports 18 (self-signed leaf) and, for js certificates,
    # 34 (unhandled critical extension, the libp2p one).  Everything libp2p
    # requires (one certificate, validity, self-signature, extension) is
    # checked after the handshake, before any application byte is delivered.
    return True


class _NoCommonALPN(SSL.Error):
    """
    The client offered no ALPN protocol we speak.  An L{SSL.Error}, so that
    pyOpenSSL's re-raise lands in TLSMemoryBIOProtocol's handshake error path.
    """


def _selectALPN(connection, offered):
    # A server facing js (["/yamux/1.0.0", "libp2p"]) picks "libp2p": the
    # muxer is then negotiated with multistream-select.  The spec says to
    # abort when nothing matches; returning NO_OVERLAPPING_PROTOCOLS would
    # only skip ALPN, raising sends a fatal alert.
    if ALPN_LIBP2P in offered:
        return ALPN_LIBP2P
    # OpenSSL's error-queue shape: [(library, function, reason)].
    raise _NoCommonALPN([("libp2p", "alpn", f"client offered no libp2p protocol: {offered!r}")])


def makeContext(certKey, cert, isClient):
    """
    A pyOpenSSL context for libp2p TLS: TLS 1.3 only, our certificate, peer
    certificate required (servers fail a client that sends none), no session
    tickets or cache, ALPN C{"libp2p"}.  Clients set no SNI.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.use_certificate(cert)
    context.use_privatekey(certKey)
    context.check_privatekey()
    context.set_options(SSL.OP_NO_TICKET)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _acceptChain)
    if isClient:
        context.set_alpn_protos([ALPN_LIBP2P])
    else:
        context.set_alpn_select_callback(_selectALPN)
    return context


@implementer(IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator)
class _ConnectionCreator:
    def __init__(self, context):
        self._context = context

    def clientConnectionForTLS(self, tlsProtocol):
        return SSL.Connection(self._context, None)

    serverConnectionForTLS = clientConnectionForTLS


# --- the layer ---


#: Plaintext writes are gathered until the end of the reactor turn, or
#: until this many bytes wait, and encrypted together (small writes, such
#: as yamux window updates, would each cost a record and a lower write).
GATHER_BYTES = 64 * 1024
#: Records held for one lower write are written once they pass this size.
HOLD_BYTES = 256 * 1024
#: Ciphertext is read out of OpenSSL in pieces of this size (under glibc's
#: mmap threshold, so the buffers are recycled rather than faulted in).
RECORDS_READ = 64 * 1024


class _Lower:
    """
    The lower transport as a L{TLSLayer} sees it.

    OpenSSL makes records of at most 16 KiB and the layer writes each one
    down as it is made.  While the layer encrypts one plaintext write, or
    handles one read of ciphertext, this holds those writes and passes them
    on together: a write of 256 KiB costs the transport below one write, not
    sixteen (over a relayed connection, a few yamux frames instead of
    sixteen).  Past L{HOLD_BYTES} what is held is written at once, so a
    burst still meets the transport's push-back; and it is written before
    the transport is closed or aborted, as it would have been without
    holding.  Everything else is the transport's own.
    """

    def __init__(self, transport):
        self.transport = transport
        self.held = None
        self.heldBytes = 0
        directlyProvides(self, providedBy(transport))

    def hold(self):
        """
        Start holding writes; False if already holding (a nested call).
        """
        if self.held is not None:
            return False
        self.held = []
        return True

    def release(self):
        """
        Write what was held, in one write, and stop holding.
        """
        self._writeHeld()
        self.held = None

    def write(self, data):
        held = self.held
        if held is None:
            self.transport.write(data)
            return
        held.append(data)
        self.heldBytes += len(data)
        if self.heldBytes >= HOLD_BYTES:
            # Past this, let the transport see it (and push back).
            self._writeHeld()

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def _writeHeld(self):
        held = self.held
        if held:
            self.held = []
            self.heldBytes = 0
            if len(held) == 1:
                self.transport.write(held[0])
            else:
                # TCP keeps the list as it is until it sends: no copy here
                self.transport.writeSequence(held)

    def loseConnection(self):
        self._writeHeld()
        self.transport.loseConnection()

    def abortConnection(self):
        self._writeHeld()
        self.transport.abortConnection()

    def __getattr__(self, name):
        return getattr(self.transport, name)


@implementer(ILoggingContext)
class _Upper:
    """
    The upper protocol as a L{TLSLayer} sees it once the peer is verified:
    the plaintext of the records decrypted from one read of ciphertext is
    passed on in one C{dataReceived} (OpenSSL hands it over one record at
    a time), so the layers above work on 64 KiB rather than 16 KiB.
    """

    def __init__(self, layer, protocol):
        self.layer = layer
        self.protocol = protocol

    def makeConnection(self, transport):
        self.protocol.makeConnection(transport)

    def dataReceived(self, data):
        batch = self.layer._batch
        if batch is not None:
            batch.append(data)
        else:
            self.protocol.dataReceived(data)

    def connectionLost(self, reason):
        self.layer._deliverBatch()
        self.protocol.connectionLost(reason)

    def logPrefix(self):
        if ILoggingContext.providedBy(self.protocol):
            return self.protocol.logPrefix()
        return self.protocol.__class__.__name__


class TLSLayer(TLSMemoryBIOProtocol):
    """
    The TLS layer of one connection: the protocol of the lower transport and,
    once the peer is verified, the transport of the upper protocol.

    Writes are gathered (L{GATHER_BYTES}, or the end of the reactor turn)
    and encrypted together; the records made from one write, or while one
    read is handled, go down in one lower write (L{_Lower}); the plaintext
    of one read comes up in one call (L{_Upper}).

    @ivar remotePeer: the verified remote L{tau.identity.PeerID}, L{None}
        until the handshake has been verified.
    """

    remotePeer = None

    def __init__(self, factory, wrappedProtocol, clock):
        TLSMemoryBIOProtocol.__init__(self, factory, wrappedProtocol)
        self._clock = clock
        self._lower = None
        self._gathered = []
        self._gatheredBytes = 0
        self._flushCall = None
        self._batch = None
        self._plainWrites = False

    def attach(self, protocol):
        """
        Make C{protocol} the upper protocol (the peer is verified) and
        connect it.
        """
        self.wrappedProtocol = _Upper(self, protocol)
        protocol.makeConnection(self)

    # the lower side

    def makeConnection(self, transport):
        lower = self._lower = _Lower(transport)
        lower.hold()
        try:
            TLSMemoryBIOProtocol.makeConnection(self, lower)
        finally:
            lower.release()

    def dataReceived(self, data):
        lower = self._lower
        holding = lower.hold()
        outer = self._batch is None
        if outer:
            self._batch = []
        try:
            TLSMemoryBIOProtocol.dataReceived(self, data)
            if outer:
                self._deliverBatch()
        finally:
            if outer:
                self._batch = None
            if holding:
                lower.release()

    def _deliverBatch(self):
        batch = self._batch
        if batch:
            self._batch = []
            protocol = self.wrappedProtocol
            if protocol is not None:
                protocol.protocol.dataReceived(batch[0] if len(batch) == 1 else b"".join(batch))

    # the upper side

    def write(self, data):
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if not self._gathered and len(data) >= GATHER_BYTES:
            self._encrypt(data)
            return
        self._gathered.append(data)
        self._gatheredBytes += len(data)
        if self._gatheredBytes >= GATHER_BYTES:
            self._flushGathered()
        elif self._flushCall is None:
            self._flushCall = self._clock.callLater(0, self._flushGathered)

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def _flushGathered(self):
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        gathered = self._gathered
        if gathered:
            self._gathered = []
            self._gatheredBytes = 0
            self._encrypt(gathered[0] if len(gathered) == 1 else b"".join(gathered))

    def _encrypt(self, data):
        connection = self.getHandle()
        if connection is None:
            return  # the connection is gone
        lower = self._lower
        holding = lower.hold()
        try:
            if self._plainWrites or self.disconnecting:
                TLSMemoryBIOProtocol.write(self, data)
                return
            # Twisted's write makes one record at a time and reads each
            # one back out of OpenSSL; this lets OpenSSL make them all and
            # reads them out in large pieces.  Anything unusual goes the
            # Twisted way from here on.
            view = memoryview(data)
            sent = 0
            try:
                while sent < len(data):
                    sent += connection.send(view[sent:])
            except SSL.Error:
                self._plainWrites = True
            self._readRecords(connection)
            if sent < len(data):
                TLSMemoryBIOProtocol.write(self, data[sent:])
        finally:
            if holding:
                lower.release()

    def _readRecords(self, connection):
        lower = self._lower
        while True:
            try:
                lower.write(connection.bio_read(RECORDS_READ))
            except SSL.WantReadError:
                return

    def loseConnection(self):
        self._flushGathered()
        TLSMemoryBIOProtocol.loseConnection(self)

    def abortConnection(self):
        self._dropGathered()
        TLSMemoryBIOProtocol.abortConnection(self)

    def connectionLost(self, reason):
        self._dropGathered()
        TLSMemoryBIOProtocol.connectionLost(self, reason)

    def _dropGathered(self):
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        self._gathered = []
        self._gatheredBytes = 0


def _address(layer):
    try:
        return layer.getPeer()
    except Exception:
        return None


@implementer(IHandshakeListener)
class _HandshakeGate(Protocol):
    """
    The TLS layer's wrapped protocol until the peer is verified: it checks the
    certificate once OpenSSL finishes, then swaps in the upper protocol so
    plaintext flows from the layer to it with no extra hop.
    """

    def __init__(self, *, upper, expectedPeer, clock, isClient, whenSecure):
        self._upper = upper
        self._expectedPeer = expectedPeer
        self._clock = clock
        self._isClient = isClient
        self._whenSecure = whenSecure
        self._timer = None

    def startTimer(self, timeout):
        self._timer = self._clock.callLater(timeout, self._timedOut)

    def _stopTimer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _fail(self, error):
        self._stopTimer()
        if not self._whenSecure.called:
            self._whenSecure.errback(Failure(error))

    def _timedOut(self):
        self._timer = None
        peerLog.info(self._clock, "handshake timed out", "TLS handshake timed out with {peer}", peer=_address(self.transport), limitBy=connectionKey(self.transport))
        self._fail(TLSHandshakeTimeout("TLS handshake did not complete in time"))
        self.transport.abortConnection()

    def _verifyPeer(self):
        connection = self.transport.getHandle()
        chain = connection.get_peer_cert_chain() or []
        # On the client side OpenSSL's chain includes the server's leaf; on
        # the server side it holds only what the client sent beyond it.
        count = len(chain) if self._isClient else len(chain) + 1
        if count != 1:
            raise TLSVerifyError(f"peer sent {count} certificates, libp2p allows exactly one")
        leaf = connection.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            raise TLSVerifyError("peer sent no certificate")
        peer = verifyCertificate(leaf.public_bytes(serialization.Encoding.DER), self._clock.seconds())
        if self._expectedPeer is not None and peer != self._expectedPeer:
            raise TLSVerifyError(f"peer is {peer}, expected {self._expectedPeer}")
        return peer

    def handshakeCompleted(self):
        layer = self.transport
        if self._whenSecure.called:
            # Timed out or cancelled while OpenSSL was finishing.
            return
        try:
            peer = self._verifyPeer()
        except TLSVerifyError as e:
            peerLog.info(self._clock, "rejected", "TLS peer {peer} rejected: {reason}", peer=_address(layer), limitBy=connectionKey(layer), reason=str(e))
            self._fail(e)
            layer.failVerification(Failure(e))
            return
        self._stopTimer()
        layer.remotePeer = peer
        layer.attach(self._upper)
        self._whenSecure.callback(peer)

    def dataReceived(self, data):
        # Never reached: the layer delivers plaintext only after the
        # handshake, when the upper protocol has replaced us.
        pass

    def connectionLost(self, reason):
        if not self._whenSecure.called:
            error = reason.value
            if not isinstance(error, TLSError):
                error = TLSHandshakeFailed(f"connection lost during the TLS handshake: {error}")
            self._fail(error)
        self._stopTimer()


class TLSSecurity:
    """
    libp2p TLS for one host: its certificate and OpenSSL contexts, made once
    and shared by all its connections.

    @param hostKey: the host's L{tau.identity.PrivateKey}.
    @param clock: an L{IReactorTime}; gives the time for certificates and
        their checks, the handshake timeout and write aggregation.
    @param certificate: C{(certPrivateKey, certificate)} to present instead of
        a fresh one from L{makeCertificate}; for tests and interop checks.
    """

    protocolID = PROTOCOL_ID

    def __init__(self, hostKey, clock, *, certificate=None):
        self.hostKey = hostKey
        self.clock = clock
        self._certificate = certificate
        self._creators = {}
        self._factories = {}

    def certificate(self):
        """
        The C{(certPrivateKey, certificate)} this host presents.
        """
        if self._certificate is None:
            self._certificate = makeCertificate(self.hostKey, self.clock.seconds())
        return self._certificate

    def _factory(self, isClient):
        factory = self._factories.get(isClient)
        if factory is None:
            certKey, cert = self.certificate()
            creator = _ConnectionCreator(makeContext(certKey, cert, isClient))
            factory = TLSMemoryBIOFactory(creator, isClient, Factory(), clock=self.clock)
            self._factories[isClient] = factory
        return factory

    def secure(
        self,
        transport,
        *,
        isClient,
        protocol,
        expectedPeer=None,
        initialBytes=b"",
        timeout=HANDSHAKE_TIMEOUT,
    ):
        """
        Start libp2p TLS over C{transport}, an established byte stream.

        The caller makes the lower transport's protocol deliver to the
        returned layer: every C{dataReceived(data)} as
        C{layer.dataReceived(data)}, the final C{connectionLost(reason)} as
        C{layer.connectionLost(reason)} (or sets C{transport.protocol = layer}
        where the transport allows it, as TCP does).  Bytes that arrived
        before the layer existed (read past the multistream-select answer)
        are passed as C{initialBytes}.

        The layer writes ciphertext to C{transport}, closes it with
        C{loseConnection} (after a TLS close_notify) or C{abortConnection},
        and registers the upper protocol's producer on it, so C{transport}
        must provide L{ITransport}, C{abortConnection} and
        L{IConsumer}.

        Once OpenSSL completes and the peer's certificate passes
        L{verifyCertificate} (and names C{expectedPeer}, when given), the
        layer calls C{protocol.makeConnection(layer)}: the upper protocol
        writes plaintext to the layer, may register a producer on it and
        gets its C{connectionLost} from it.  Then the Deferred fires, before
        any application byte is delivered.

        On failure the Deferred fails with L{TLSVerifyError},
        L{TLSHandshakeTimeout} (after C{timeout} seconds) or
        L{TLSHandshakeFailed}, the connection is aborted, and C{protocol}
        never hears of it.  Cancelling the Deferred aborts the connection.

        @param isClient: True on the side that sends the ClientHello (the
            dialer, or the security initiator of a relayed connection).
        @param expectedPeer: the L{tau.identity.PeerID} the remote must
            prove; required by the spec on the client side.
        @return: C{(layer, Deferred[PeerID])}
        """
        factory = self._factory(isClient)

        def cancel(d):
            gate._stopTimer()
            layer.abortConnection()

        whenSecure = Deferred(cancel)
        gate = _HandshakeGate(
            upper=protocol,
            expectedPeer=expectedPeer,
            clock=self.clock,
            isClient=isClient,
            whenSecure=whenSecure,
        )
        layer = TLSLayer(factory, gate, self.clock)
        gate.startTimer(timeout)
        layer.makeConnection(transport)
        if initialBytes and not whenSecure.called:
            layer.dataReceived(initialBytes)
        return layer, whenSecure


def secure(
    transport,
    *,
    isClient,
    hostKey,
    clock,
    protocol,
    expectedPeer=None,
    initialBytes=b"",
    timeout=HANDSHAKE_TIMEOUT,
):
    """
    L{TLSSecurity.secure} with a one-off L{TLSSecurity} (a fresh certificate
    and context).  A host that makes many connections keeps one
    L{TLSSecurity} instead.
    """
    return TLSSecurity(hostKey, clock).secure(
        transport,
        isClient=isClient,
        protocol=protocol,
        expectedPeer=expectedPeer,
        initialBytes=initialBytes,
        timeout=timeout,
    )
