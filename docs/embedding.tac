# A tau node embedded in a Twisted application (see docs/embedding.md).
#
#   TAU_ROOT=/tmp/tau-embedded twistd -ny docs/embedding.tac
#
# The node keeps its identity and data under $TAU_ROOT (default
# ~/.tau-embedded); its control API and p2p listener bind free loopback ports.

import os

from twisted.application.service import Application
from twisted.internet import reactor
from twisted.logger import Logger

import tau
from tau.errors import ConfigError

log = Logger(namespace="embedding")

root = os.environ.get("TAU_ROOT") or os.path.expanduser("~/.tau-embedded")

# Reads (and on first use creates) ROOT/config/full.yaml; the overrides use
# the config file's field names and win over the file, as command-line options
# do under `twistd taubyte`.
try:
    config = tau.loadConfig(
        shape="full",
        root=root,
        overrides={
            "api-listen": "tcp:0:interface=127.0.0.1",
            "p2p-listen": ["/ip4/127.0.0.1/tcp/0"],
        },
    )
except ConfigError as e:
    raise SystemExit(f"embedding.tac: {e}")

application = Application("tau-embedded")

# An unstarted MultiService: nothing listens until twistd starts the
# application, and it stops with the application.
node = tau.makeNode(config, reactor=reactor)
node.setServiceParent(application)


def ready(node):
    ports = node.ports()
    log.info(
        "embedded tau node {peerID} listening: api port {api}, p2p port {p2p}; ready",
        peerID=str(node.config.peerID),
        api=ports.get("api"),
        p2p=ports.get("p2p", "none"),
    )


def failed(failure):
    log.error("embedded tau node could not start: {reason}", reason=failure.getErrorMessage())
    reactor.callWhenRunning(reactor.stop)


node.whenReady().addCallbacks(ready, failed)
