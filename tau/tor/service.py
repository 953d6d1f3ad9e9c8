"""
The node's tor: started (launched or reached) when the node starts, it
lets the host dial C{/onion3} addresses and, with C{tor.onion}, publishes
the node as a v3 onion service whose key is kept in the node's root, so
its address survives restarts.

Tor is slow to start and may fail; none of it holds the node back: the
node is ready without it, and a tor that cannot start is logged (why, and
tor's last log lines) while the node carries on with its other transports.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure

from tau.listen import Listener
from tau.oneshot import OneShot
from tau.private import writePrivate
from tau.tor.control import TorStartError, connectTor, launchTor, quitTor
from tau.tor.transport import ONION_DIAL_TIMEOUT, InboundFactory, OnionTransport, onionAddr

#: The file in the node's data folder holding its onion service's key.
KEY_FILE = "onion-v3.key"


class TorService(Service):
    """
    @param host: the L{tau.host.Host}; the service adds the onion transport
        to it and announces the onion address on it.
    @param settings: the C{tor} config section.
    @param dataDir: the node's data folder (the key file, and the launched
        tor's DataDirectory C{dataDir/tor} unless C{tor.data-dir} says).
    @param reactor: IReactorCore, IReactorTime, IReactorTCP, IReactorProcess.

    @ivar tor: the bootstrapped C{txtorcon.Tor}, or None.
    @ivar onionAddress: C{/onion3/<name>:<port>} once published, else None.
    @ivar error: why tor or the onion service failed, or None.
    @ivar bootstrapSeconds: how long tor took to be usable.
    """

    log = Logger()

    def __init__(self, host, settings, dataDir, reactor):
        self.setName("tor")
        self.host = host
        self.settings = settings
        self.dataDir = dataDir
        self.reactor = reactor
        self.tor = None
        self.onionAddress = None
        self.onionService = None
        self.error = None
        self.bootstrapSeconds = None
        self.transport = OnionTransport(host, lambda: self.tor, reactor)
        self._process = None
        self._listener = None
        self._starting = None
        self._ready = OneShot()

    @property
    def keyFile(self):
        return self.dataDir / KEY_FILE

    def startService(self):
        super().startService()
        if self._ready.fired:
            self._ready = OneShot()
        self.error = None
        self._starting = Deferred.fromCoroutine(self._start())
        self._starting.addBoth(self._started)

    def whenReady(self):
        """
        @return: a Deferred firing with this service once tor is bootstrapped
            (and the onion service published, with C{tor.onion}), or failing
            with L{TorStartError}.
        """
        return self._ready.whenFired()

    def _progress(self, what):
        def progress(percent, tag, summary):
            self.log.debug("{what}: {percent}% {summary}", what=what, percent=percent, summary=summary or tag)

        return progress

    async def _start(self):
        settings = self.settings
        began = self.reactor.seconds()
        if settings["launch"]:
            self.log.info("launching tor")
            self.tor, self._process = await launchTor(self.reactor, settings, self.dataDir / "tor", self._progress("tor bootstrap"))
        else:
            self.log.info("connecting to tor at {control}", control=settings["control"])
            self.tor = await connectTor(self.reactor, settings, self._progress("tor bootstrap"))
        tor = self.tor
        tor.protocol.when_disconnected().addBoth(self._lost, tor)
        self.bootstrapSeconds = self.reactor.seconds() - began
        self.log.info("tor is bootstrapped ({seconds:.1f}s); /onion3 addresses can be dialed", seconds=self.bootstrapSeconds)
        if settings["onion"]:
            await self._publish()

    async def _publish(self):
        self._listener = Listener("p2p onion", "tcp:0:interface=127.0.0.1", InboundFactory(self.host), self.reactor)
        self._listener.startService()
        port = await self._listener.whenListening()
        local = port.getHost().port
        key = self._loadKey()
        began = self.reactor.seconds()
        publishing = self.tor.create_onion_service(
            [(self.settings["port"], f"127.0.0.1:{local}")],
            private_key=key,
            version=3,
            progress=self._progress("onion service"),
        )
        publishing.addTimeout(self.settings["timeout"], self.reactor)
        try:
            service = await publishing
        except TimeoutError:
            raise TorStartError(f"the onion service was not published in {self.settings['timeout']}s") from None
        except CancelledError:
            raise
        except Exception as e:
            raise TorStartError(f"publishing the onion service failed: {e.__class__.__name__}: {e}") from None
        self.onionService = service
        if not key and service.private_key:
            writePrivate(self.keyFile, service.private_key + "\n")
        self.onionAddress = onionAddr(service.hostname, self.settings["port"])
        self.host.addAnnouncedAddrs([self.onionAddress])
        self.log.info(
            "onion service published in {seconds:.1f}s: reachable at {addr}",
            seconds=self.reactor.seconds() - began,
            addr=f"{self.onionAddress}/p2p/{self.host.peerID}",
        )

    def _lost(self, reason, tor):
        """
        Our control connection to C{tor} closed: unless we closed it, tor
        went away (it exited, or was stopped): say so, withdraw the onion
        address, and dial no more through it.
        """
        if tor is not self.tor or not self.running:
            return None
        why = "tor went away (our control connection to it closed)"
        process = self._process
        lines = process.tail.tail() if process is not None else []
        self.error = TorStartError(why + "; /onion3 addresses cannot be dialed and the onion service is gone", lines)
        self.log.error("tor failed: {reason} -- the node carries on without tor", reason=str(self.error))
        self.tor = None
        if self.onionAddress is not None:
            self.host.removeAnnouncedAddrs([self.onionAddress])
            self.onionAddress = None
        self.onionService = None
        return None

    def _loadKey(self):
        """
        The onion service's key from the node's data folder, or None the
        first time (tor then makes one, which is saved).

        @raise TorStartError: when the file is there but unusable.
        """
        try:
            text = self.keyFile.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise TorStartError(f"cannot read the onion key {self.keyFile}: {e}") from None
        if not text.startswith("ED25519-V3:") or len(text) > 200:
            raise TorStartError(f"{self.keyFile} does not hold a v3 onion key (ED25519-V3:...); move it away to make a new address")
        return text

    def _started(self, result):
        self._starting = None
        if isinstance(result, Failure):
            if result.check(CancelledError):
                self._ready.fire(Failure(TorStartError("stopped before tor was ready")))
                return None
            error = result.value if result.check(TorStartError) else TorStartError(f"{result.type.__name__}: {result.getErrorMessage()}")
            self.error = error
            self.log.error(
                "tor failed: {reason} -- the node carries on without tor (its other transports still work)",
                reason=str(error),
            )
            self._ready.fire(Failure(error))
            return None
        self._ready.fire(self)
        return None

    async def _stop(self):
        starting = self._starting
        if starting is not None:
            starting.cancel()
        if self.onionAddress is not None:
            self.host.removeAnnouncedAddrs([self.onionAddress])
            self.onionAddress = None
        listener, self._listener = self._listener, None
        if listener is not None:
            await _maybe(listener.stopService())
        tor, self.tor = self.tor, None
        process, self._process = self._process, None
        self.onionService = None
        if tor is not None:
            await quitTor(self.reactor, tor, process)

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


async def _maybe(result):
    if isinstance(result, Deferred):
        await result


def install(host, config, reactor):
    """
    The node's L{TorService} for C{config.tor}, with its transport added to
    C{host}; None when tor is not enabled.
    """
    settings = config.tor
    if not settings["enabled"]:
        return None
    service = TorService(host, settings, config.dataDir, reactor)
    host.addTransport(service.transport)
    host.dialDeadline = max(host.dialDeadline, ONION_DIAL_TIMEOUT)
    return service
