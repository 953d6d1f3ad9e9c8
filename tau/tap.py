"""
The twistd plugin: C{twistd -n taubyte --shape=full [--root DIR] ...}.
"""

import gc
import signal

from twisted.application.service import MultiService, Service
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python import usage

from tau.config import defaultRoot, loadConfig
from tau.errors import ConfigError
from tau.node import makeNode

log = Logger()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a tau (Taubyte) node.  The first start creates the root folder with "
        "a new identity; later starts reuse it.  Values given here override "
        "--config FILE, which overrides ROOT/config/SHAPE.yaml."
    )
    optParameters = [
        ["shape", "s", "full", "The node's shape: full, gateway, a service name, or any name with a config file."],
        ["root", "r", None, "The node's root folder (default: $TAU_ROOT or ~/.tau)."],
        ["config", "c", None, "A YAML config file (Taubyte shape-file fields)."],
        ["api-listen", None, None, "Endpoint string of the local control API (loopback only)."],
        ["swarmkey", None, None, "Path of a libp2p swarm.key: join the private swarm it names."],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["announce"] = []
        self["peer"] = []

    def opt_listen(self, addr):
        """
        A p2p listen multiaddr, e.g. /ip4/0.0.0.0/tcp/4242 (repeatable).
        """
        self["listen"].append(addr)

    def opt_announce(self, addr):
        """
        A multiaddr to announce to peers (repeatable).
        """
        self["announce"].append(addr)

    def opt_peer(self, addr):
        """
        A bootstrap peer multiaddr ending in /p2p/ID (repeatable).
        """
        self["peer"].append(addr)

    def overrides(self):
        """
        The config fields given on the command line, under Taubyte's names.
        """
        out = {}
        for option, field in (("listen", "p2p-listen"), ("announce", "p2p-announce"), ("peer", "peers")):
            if self[option]:
                out[field] = list(self[option])
        for option in ("api-listen", "swarmkey"):
            if self[option] is not None:
                out[option] = self[option]
        return out


class _Guard(Service):
    """
    Under twistd: turn a node that cannot start into a one-line error and a
    non-zero exit, instead of a traceback or a node that runs half-started;
    and let a stop on SIGTERM or SIGINT exit with status 0.
    """

    def __init__(self, node, reactor):
        self._node = node
        self._reactor = reactor

    def startService(self):
        super().startService()
        d = self._node.whenReady()
        now, starting = [], [True]

        def failedNow(failure):
            if not starting[0]:
                return failure
            now.append(failure)

        d.addErrback(failedNow)
        starting[0] = False
        if now:
            # twistd starts services before running the reactor: failing here
            # ends the process with the message and exit status 1.
            raise SystemExit(f"taubyte: {now[0].getErrorMessage()}")
        d.addCallbacks(self._started, self._failedLater)
        # 'during startup' triggers run in order: this one after the
        # reactor's own, which installs its signal handlers
        self._reactor.addSystemEventTrigger("during", "startup", self._stopCleanlyOnSignals)

    def _started(self, node):
        # What the node built to start (modules, config, keys, tables)
        # lives as long as the process: keep it out of the collector's
        # full passes, which otherwise walk all of it every few seconds
        # under load (40-80 ms each: the p99 of every request in flight).
        gc.collect()
        gc.freeze()
        log.info("taubyte: ready; {count} objects kept out of garbage collection", count=gc.get_freeze_count())

    def _failedLater(self, failure):
        log.error("taubyte: {reason}; stopping", reason=failure.getErrorMessage())
        self._reactor.callWhenRunning(self._reactor.stop)

    def _stopCleanlyOnSignals(self):
        # The reactor's own SIGTERM and SIGINT handlers record the signal, and
        # twistd raises it again on itself after a clean shutdown, so the exit
        # status would say "killed".  A node that stopped cleanly on request
        # exits 0, as operators and service managers expect: these handlers
        # stop the reactor the same way without recording the signal.  Left
        # alone when the reactor runs without signal handlers.
        for number, theirs in ((signal.SIGTERM, getattr(self._reactor, "sigTerm", None)),
                               (signal.SIGINT, getattr(self._reactor, "sigInt", None))):
            if theirs is not None and signal.getsignal(number) == theirs:
                signal.signal(number, self._stopOnSignal)

    def _stopOnSignal(self, number, frame):
        log.info("taubyte: {signal}, stopping", signal=signal.Signals(number).name)
        self._reactor.callFromThread(self._stopReactor)

    def _stopReactor(self):
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            # a second signal while stopping
            pass


def makeService(options):
    from twisted.internet import reactor

    if options["root"] is None:
        log.info("using root {root} (default; --root or TAU_ROOT to change)", root=str(defaultRoot()))
    try:
        config = loadConfig(
            shape=options["shape"],
            root=options["root"],
            configFile=options["config"],
            overrides=options.overrides(),
        )
    except ConfigError as e:
        raise SystemExit(f"taubyte: {e}") from None
    top = MultiService()
    node = makeNode(config, reactor=reactor)
    node.setServiceParent(top)
    _Guard(node, reactor).setServiceParent(top)
    return top
