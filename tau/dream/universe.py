"""
What a dream is made of on disk, before anything runs: its name, its
shapes (the services of each node), its keys and one root per node.

    FOLDER/
      dream.json        the running dream: nodes, pids, ports (supervisor)
      dream.pid         the supervisor's pid
      dream.log         the supervisor's log
      control.token     the bearer token of the supervisor's control API
      cloud.key         the dream's cloud key (admits every node)
      swarm.key         its private swarm: two dreams never meet
      tmp/              TMPDIR of every process of the dream
      nodes/N-LABEL/    node N's root (config/dream.yaml, storage/, node.log)
      simple/           the supervisor's own client node (the console's)
"""

import base64
import os
import re
from pathlib import Path

import yaml

from tau import services
from tau.cloud import makeAdmission
from tau.identity import PrivateKey
from tau.private import writePrivate

#: A dream's name: it is also a DNS label (C{<name>.localtau}).
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
#: The top-level domain of every dream's network.
TLD = "localtau"
#: The most nodes one dream runs.
MAX_NODES = 64
#: The shape name of every dream node's config file.
SHAPE = "dream"
#: seer's TTL in a dream (seconds): short, nodes come and go
SEER_TTL = 6


class DreamError(Exception):
    """
    A dream cannot be made or run as asked; the message says why.
    """


def checkName(name):
    if not isinstance(name, str) or not NAME.match(name):
        raise DreamError(f"dream name {name!r}: expected 1 to 32 lower-case letters, digits and -, "
                         "not starting or ending with -")
    return name


def fqdnOf(name):
    """
    The network FQDN of dream C{name}: C{<name>.localtau}.
    """
    return f"{checkName(name)}.{TLD}"


def defaultFolder(name):
    """
    C{~/.cache/tau/dream/<name>} (C{$XDG_CACHE_HOME} instead of C{~/.cache}
    when set).
    """
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tau" / "dream" / checkName(name)


def defaultShapes():
    """
    One node per service this build provides, in L{services.KNOWN}'s order.
    """
    provided = set(services.available())
    return [(name,) for name in services.KNOWN if name in provided]


def checkShape(shape):
    """
    A node's services, a tuple; C{shape} is a sequence of names or text
    C{"a+b"}.

    @raise DreamError: an unknown service, none, a repeated one, or
        services that never share a node.
    """
    names = tuple(shape.split("+")) if isinstance(shape, str) else tuple(shape)
    if not names:
        raise DreamError("a node runs at least one service")
    for name in names:
        if name not in services.available():
            known = ", ".join(services.available())
            raise DreamError(f"service {name!r} is not provided by this build (it provides: {known})")
    if len(set(names)) != len(names):
        raise DreamError(f"shape {'+'.join(names)}: a service is named twice")
    for exclusive in services.EXCLUSIVE:
        if len(exclusive & set(names)) > 1:
            raise DreamError(f"shape {'+'.join(names)}: {' and '.join(sorted(exclusive))} never share a node")
    return names


def parseShapes(text):
    """
    C{"seer+tns,auth,gateway"} -> C{[("seer", "tns"), ("auth",), ("gateway",)]}:
    one node per comma-separated item.
    """
    items = [item.strip() for item in text.split(",")] if text.strip() else []
    if not items:
        raise DreamError("--shapes: give at least one node (e.g. tns,seer+auth)")
    if len(items) > MAX_NODES:
        raise DreamError(f"--shapes: at most {MAX_NODES} nodes")
    return [checkShape(item) for item in items]


class Layout:
    """
    The paths of the dream kept in C{folder}.
    """

    def __init__(self, folder):
        self.folder = Path(folder).absolute()

    state = property(lambda self: self.folder / "dream.json")
    pidFile = property(lambda self: self.folder / "dream.pid")
    log = property(lambda self: self.folder / "dream.log")
    cloudKey = property(lambda self: self.folder / "cloud.key")
    swarmKey = property(lambda self: self.folder / "swarm.key")
    tmp = property(lambda self: self.folder / "tmp")
    simple = property(lambda self: self.folder / "simple")
    controlToken = property(lambda self: self.folder / "control.token")

    def nodeRoot(self, index, shape):
        return self.folder / "nodes" / f"{index}-{'-'.join(shape)}"


def prepareFolder(layout):
    """
    Make the folder, its cloud key and swarm key (kept when they exist: a
    dream started again is the same cloud); the cloud's L{PrivateKey}.
    """
    layout.folder.mkdir(parents=True, exist_ok=True)
    layout.tmp.mkdir(exist_ok=True)
    if not layout.cloudKey.exists():
        writePrivate(layout.cloudKey, base64.b64encode(PrivateKey.generate().toProtobuf()).decode("ascii") + "\n")
    if not layout.swarmKey.exists():
        writePrivate(layout.swarmKey, "/key/swarm/psk/1.0.0/\n/base16/\n" + os.urandom(32).hex() + "\n")
    return PrivateKey.fromProtobuf(base64.b64decode(layout.cloudKey.read_text(encoding="ascii")))


def prepareNode(layout, index, shape, fqdn, cloudKey, announceIP="127.0.0.1", configure=None):
    """
    Write node C{index}'s root: its shape file C{config/dream.yaml} with a
    new identity, its admission to the dream's cloud for its services,
    every listener on a loopback port 0, the dream's swarm key and network.
    An existing shape file (a node started before) is kept.

    @param configure: C{configure(index, shape, fields)}, called with the
        shape file's fields (a dict, Taubyte's names) before they are
        written: a test adds or changes sections there.

    @return: the root.
    """
    root = layout.nodeRoot(index, shape)
    path = root / "config" / f"{SHAPE}.yaml"
    if path.exists():
        return root
    (root / "config").mkdir(parents=True, exist_ok=True)
    key = PrivateKey.generate()
    fields = {
        "privatekey": base64.b64encode(key.toProtobuf()).decode("ascii"),
        "services": list(shape),
        "swarmkey": str(layout.swarmKey),
        "cloud": {"key": str(cloudKey.peerID()), "admission": makeAdmission(cloudKey, key.peerID(), shape).text()},
        "api-listen": f"tcp:0:interface={announceIP}",
        "p2p-listen": [f"/ip4/{announceIP}/tcp/0"],
        "network-fqdn": fqdn,
        # a node tells seer it lives every 2 s (a third of the TTL): a dream is
        # answered for within seconds of its start
        "seer": {"announce-ip": announceIP, "ttl": SEER_TTL},
    }
    if configure is not None:
        configure(index, tuple(shape), fields)
    writePrivate(path, yaml.safe_dump(fields))
    return root
