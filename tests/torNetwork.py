"""
A private Tor network on loopback, for tests and benchmarks: directory
authorities that are relays too, a few more relays, and clients, every one a
Debian C{tor} process with the testing-network settings (chutney's rapid
bootstrap profile: C{TestingTorNetwork 1}, C{AssumeReachable 1}, short
voting intervals, every relay voted Guard, Exit and HSDir).  Nothing in it
talks to the real Tor network: every address is 127.0.0.1, every port one
the kernel handed out.

    net = TorNetwork(reactor, directory)
    await net.start()                   # keys, torrc files, processes
    client = await net.startClient("b") # a bootstrapped client tor
    client.controlPort, client.socksPort
    net.clientOptions()                 # torrc options of a client of it
    await net.stop()

With C{TestingV3AuthInitialVotingInterval 5} the first consensus is out a
few seconds after the authorities start; a client is bootstrapped some 10-30
seconds after that.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket

from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.utils import getProcessOutputAndValue

from tests.processes import Process

TOR = shutil.which("tor") or "/usr/sbin/tor"
GENCERT = shutil.which("tor-gencert") or "/usr/bin/tor-gencert"
#: Seconds a client may take to bootstrap on the private network.
BOOTSTRAP_TIMEOUT = 120
#: Seconds the authorities may take to publish their first consensus.
CONSENSUS_TIMEOUT = 90


def torAvailable():
    """
    None when C{tor} and C{tor-gencert} can be run, else why not.
    """
    for path in (TOR, GENCERT):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install tor)"
    return None


def freePorts(count):
    """
    C{count} distinct TCP ports free on 127.0.0.1 now (bound to port 0 and
    released, all held at once so none repeats).
    """
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


#: What every tor of the network is given (chutney's common.i, rapid profile).
COMMON = [
    ("TestingTorNetwork", "1"),
    ("AssumeReachable", "1"),
    ("PathsNeededToBuildCircuits", "0.25"),
    ("TestingDirAuthVoteExit", "*"),
    ("TestingDirAuthVoteGuard", "*"),
    ("TestingDirAuthVoteHSDir", "*"),
    ("TestingMinExitFlagThreshold", "0"),
    ("V3AuthNIntervalsValid", "2"),
    ("ClientUseIPv6", "0"),
    ("ShutdownWaitLength", "0"),
    ("SafeLogging", "0"),
    ("Log", "notice stdout"),
    ("RunAsDaemon", "0"),
]
#: Relays and authorities: chutney's relay-non-exit and authority templates.
RELAY = [
    ("Address", "127.0.0.1"),
    ("ExitRelay", "0"),
    ("ExitPolicy", "reject *:*"),
    ("SocksPort", "0"),
    ("TestingServerDownloadInitialDelay", "0"),
    ("TestingServerConsensusDownloadInitialDelay", "0"),
]
AUTHORITY = [
    ("AuthoritativeDirectory", "1"),
    ("V3AuthoritativeDirectory", "1"),
    ("TestingV3AuthInitialVotingInterval", "5"),
    ("V3AuthVotingInterval", "10"),
    ("TestingV3AuthInitialVoteDelay", "2"),
    ("V3AuthVoteDelay", "2"),
    ("TestingV3AuthInitialDistDelay", "2"),
    ("V3AuthDistDelay", "2"),
]


def torrc(options):
    return "".join(f"{key} {value}\n" for key, value in options)


class TorProcess:
    """
    One tor of the network.

    @ivar process: its L{tests.processes.Process}.
    @ivar controlPort: its control port (clients), else None.
    @ivar socksPort: its SOCKS port (clients), else None.
    """

    def __init__(self, name, directory, options, controlPort=None, socksPort=None):
        self.name = name
        self.directory = directory
        self.options = options
        self.controlPort = controlPort
        self.socksPort = socksPort
        self.process = None

    @property
    def control(self):
        """
        The client endpoint string of its control port.
        """
        return f"tcp:127.0.0.1:{self.controlPort}"

    def start(self, reactor):
        path = os.path.join(self.directory, "torrc")
        with open(path, "w", encoding="utf-8") as f:
            f.write(torrc(self.options))
        self.process = Process(reactor)
        reactor.spawnProcess(self.process, TOR, [TOR, "-f", path, "--ignore-missing-torrc"], env={"HOME": self.directory}, path=self.directory)
        return self.process

    def log(self, lines=30):
        """
        The last C{lines} lines tor printed.
        """
        if self.process is None:
            return ""
        return "\n".join(self.process.output().splitlines()[-lines:])

    async def stop(self):
        if self.process is None or self.process.exited:
            return
        try:
            self.process.transport.signalProcess(signal.SIGINT)
        except Exception:
            return
        try:
            await self.process.ended(timeout=15)
        except Exception:
            self.process.transport.signalProcess(signal.SIGKILL)
            await self.process.ended(timeout=15)


class TorNetwork:
    """
    A private Tor network in C{directory} (see the module docstring).

    @param authorities: directory authorities (relays too); at least 3.
    @param relays: more relays.
    """

    def __init__(self, reactor, directory, *, authorities=3, relays=3):
        self.reactor = reactor
        self.directory = os.path.abspath(directory)
        self.authorityCount = authorities
        self.relayCount = relays
        self.tors = []
        self.dirAuthorities = []

    async def _run(self, argv, stdin=None, path=None):
        # tor-gencert reads the passphrase of the identity key from fd 0
        if stdin is not None:
            argv = ["/bin/sh", "-c", 'printf "\\n" | "$0" "$@"', *argv]
        out, err, code = await getProcessOutputAndValue(argv[0], argv[1:], env={}, path=path, reactor=self.reactor)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({code}): {(out + err).decode(errors='replace')}")
        return out.decode()

    async def _authorityKeys(self, directory, dirPort):
        keys = os.path.join(directory, "keys")
        os.makedirs(keys, mode=0o700, exist_ok=True)
        await self._run(
            [GENCERT, "--create-identity-key", "--passphrase-fd", "0", "-m", "12", "-a", f"127.0.0.1:{dirPort}",
             "-i", os.path.join(keys, "authority_identity_key"), "-s", os.path.join(keys, "authority_signing_key"),
             "-c", os.path.join(keys, "authority_certificate")],
            stdin=True, path=keys,
        )
        with open(os.path.join(keys, "authority_certificate"), encoding="ascii") as f:
            v3ident = next(line.split()[1] for line in f if line.startswith("fingerprint "))
        return v3ident

    async def _relayFingerprint(self, directory):
        await self._run(
            [TOR, "--list-fingerprint", "--orport", "1", "--dirserver", "x 127.0.0.1:1 " + "f" * 40,
             "--datadirectory", directory, "--quiet"],
            path=directory,
        )
        with open(os.path.join(directory, "fingerprint"), encoding="ascii") as f:
            return f.read().split()[1]

    def _dir(self, name):
        path = os.path.join(self.directory, name)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    async def start(self):
        """
        Make the keys and start every authority and relay.
        """
        os.makedirs(self.directory, exist_ok=True)
        nodes = []
        ports = freePorts(2 * self.authorityCount + self.relayCount)
        for i in range(self.authorityCount):
            name = f"auth{i}"
            directory = self._dir(name)
            orPort, dirPort = ports.pop(), ports.pop()
            v3ident, fingerprint = await gatherResults(
                [Deferred.fromCoroutine(self._authorityKeys(directory, dirPort)),
                 Deferred.fromCoroutine(self._relayFingerprint(directory))]
            )
            self.dirAuthorities.append(
                f"{name} orport={orPort} no-v2 v3ident={v3ident} 127.0.0.1:{dirPort} {fingerprint}"
            )
            nodes.append((name, directory, [("ORPort", str(orPort)), ("DirPort", str(dirPort)), *AUTHORITY]))
        for i in range(self.relayCount):
            name = f"relay{i}"
            directory = self._dir(name)
            nodes.append((name, directory, [("ORPort", str(ports.pop()))]))
        for name, directory, own in nodes:
            options = [("DataDirectory", directory), ("Nickname", name), ("ContactInfo", f"{name}@test.test"),
                       *COMMON, *RELAY, *own, *self._authorityLines()]
            tor = TorProcess(name, directory, options)
            self.tors.append(tor)
            tor.start(self.reactor)
        # each relay says when its OR listener is open
        await gatherResults([tor.process.waitFor(b"Opening OR listener", timeout=30) for tor in self.tors])
        # a client started before the first consensus backs off between
        # its tries: wait for the authorities to publish one
        authorities = self.tors[: self.authorityCount]
        try:
            await gatherResults([tor.process.waitFor(b"Published microdesc consensus", timeout=CONSENSUS_TIMEOUT) for tor in authorities])
        except Exception as e:
            logs = "\n".join(f"--- {tor.name}\n{tor.log()}" for tor in authorities)
            raise RuntimeError(f"no consensus in {CONSENSUS_TIMEOUT}s ({e.__class__.__name__}); the authorities' logs:\n{logs}") from None

    def _authorityLines(self):
        return [("DirAuthority", line) for line in self.dirAuthorities]

    def clientOptions(self):
        """
        The torrc options (C{(key, value)} pairs) a client tor of this
        network needs besides its own ports and data directory.
        """
        return [*COMMON, *self._authorityLines()]

    def clientOptionsMapping(self):
        """
        L{clientOptions} as the C{tor.options} mapping of a node config
        (repeated keys as lists; tor's logging left to txtorcon).
        """
        out = {}
        for key, value in self.clientOptions():
            if key in ("Log", "RunAsDaemon"):
                continue
            if key in out:
                out[key] = out[key] if isinstance(out[key], list) else [out[key]]
                out[key].append(value)
            else:
                out[key] = value
        return out

    async def startClient(self, name, timeout=BOOTSTRAP_TIMEOUT):
        """
        Start a client tor (SOCKS and control port on loopback, no
        authentication on the control port) and wait until it is
        bootstrapped.

        @rtype: L{TorProcess}
        """
        directory = self._dir(name)
        controlPort, socksPort = freePorts(2)
        options = [("DataDirectory", directory), ("Nickname", name), *self.clientOptions(),
                   ("SocksPort", f"127.0.0.1:{socksPort}"), ("ControlPort", f"127.0.0.1:{controlPort}")]
        tor = TorProcess(name, directory, options, controlPort=controlPort, socksPort=socksPort)
        self.tors.append(tor)
        tor.start(self.reactor)
        try:
            await tor.process.waitFor(b"Bootstrapped 100%", timeout=timeout)
        except Exception as e:
            raise RuntimeError(f"the client tor {name} did not bootstrap in {timeout}s ({e.__class__.__name__}); its log:\n{tor.log()}") from None
        return tor

    async def stop(self):
        """
        Stop every tor started, and wait for them.
        """
        tors, self.tors = self.tors, []
        await DeferredList([Deferred.fromCoroutine(tor.stop()) for tor in tors], consumeErrors=True)
