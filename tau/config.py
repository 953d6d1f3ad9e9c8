"""
Node configuration: the YAML of Taubyte's shape files, validated, with defaults.

Precedence, highest first: command-line options, C{--config FILE}, the root's
own shape file C{ROOT/config/<shape>.yaml}, built-in defaults.  The root's shape
file is where a node keeps its identity: it is written on first start (mode
0600) and read on every later start, so the node keeps its PeerId.

The sections (C{dht}, C{relay}, C{tns}...) are owned by their subsystems
(L{tau.configsection.Section}); this module checks the top-level fields and
composes the sections listed in L{SECTIONS}: a section registered there is
read, merged, held (C{config.<attribute>}) and shown like any other.

Loading reads files synchronously: call it before the reactor runs (as twistd
and the CLI do) or from a thread.
"""

import base64
import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

import multiaddr
import yaml
from multiaddr.exceptions import Error as MultiaddrError

from tau import services
from tau.autonat.config import AutoNATSection
from tau.dcutr.config import DCUtRSection
from tau.cloud import CloudSection
from tau.configsection import require
from tau.connmgr import ConnectionsSection
from tau.errors import ConfigError
from tau.identity import InvalidKey, PeerID, PrivateKey
from tau.kad.config import DHTSection
from tau.kvdb.config import KVDBSection
from tau.relay.config import RelaySection
from tau.security import DEFAULT as DEFAULT_SECURITY, KINDS as SECURITY_KINDS
from tau.services.auth.config import AuthSection
from tau.services.gateway.config import GatewaySection
from tau.services.patrick.config import PatrickSection
from tau.services.monkey.config import MonkeySection
from tau.services.hoarder.config import HoarderSection
from tau.services.seer.config import SeerSection
from tau.services.substrate.config import SubstrateSection
from tau.services.tns.config import TNSSection
from tau.store.config import StorageSection
from tau.tor.config import TorSection

DEFAULT_PORTS = {"main": 4242, "lite": 4247, "ipfs": 4252}
DEFAULT_API_LISTEN = "tcp:0:interface=127.0.0.1"
SHAPE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# The fields of a node config that are not sections; Taubyte's names, plus
# tau's own last.
FIELDS = (
    "privatekey",
    "swarmkey",
    "services",
    "protocols",
    "p2p-listen",
    "p2p-announce",
    "p2p-security",
    "ports",
    "peers",
    "network-fqdn",
    "domains",
    "location",
    "plugins",
    "api-listen",
    "perf",
    "api-token",
)
# The sections, each a mapping owned by its subsystem (L{tau.configsection}),
# in the order they are listed and shown.
SECTIONS = [
    ConnectionsSection(),
    DHTSection(),
    RelaySection(),
    AutoNATSection(),
    TorSection(),
    DCUtRSection(),
    StorageSection(),
    CloudSection(),
    KVDBSection(),
    AuthSection(),
    TNSSection(),
    HoarderSection(),
    SeerSection(),
    GatewaySection(),
    SubstrateSection(),
    PatrickSection(),
    MonkeySection(),
]


@dataclass(frozen=True)
class NodeConfig:
    """
    A validated node configuration.  Build it with L{loadConfig}.

    @ivar sections: each section's value by its attribute, also read as an
        attribute: C{config.dht} (a dict), C{config.tns} (a
        L{tau.services.tns.config.TNSConfig}).
    """

    root: Path
    shape: str
    services: tuple
    privateKey: PrivateKey
    p2pListen: tuple = ()
    p2pAnnounce: tuple = ()
    p2pSecurity: tuple = DEFAULT_SECURITY
    ports: dict = field(default_factory=lambda: dict(DEFAULT_PORTS))
    peers: tuple = ()
    networkFqdn: str = ""
    domains: dict = field(default_factory=dict)
    location: dict = None
    plugins: tuple = ()
    swarmKey: bytes = None
    swarmKeyPath: Path = None
    apiListen: str = DEFAULT_API_LISTEN
    perf: bool = False
    apiToken: bool = False
    sections: dict = field(default_factory=dict)
    sources: tuple = ()
    secretFiles: tuple = ()

    def __getattr__(self, name):
        # a section by its attribute: config.dht, config.tns...
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def peerID(self):
        return self.privateKey.peerID()

    @property
    def dataDir(self):
        """
        The shape's data folder, C{ROOT/storage/<shape>}.
        """
        return self.root / "storage" / self.shape

    @property
    def apiFile(self):
        """
        Where a running node writes its control API address.
        """
        return self.dataDir / "api"

    @property
    def apiTokenFile(self):
        """
        Where the control API's bearer token is kept (with C{api-token}).
        """
        return self.dataDir / "api-token"

    def evolve(self, **changes):
        """
        A copy with C{changes}, fields or sections (by attribute).
        """
        sections = {k: changes.pop(k) for k in list(changes) if k in self.sections}
        return replace(self, sections={**self.sections, **sections}, **changes)


def defaultRoot():
    """
    The root used when none is given: C{$TAU_ROOT}, else C{~/.tau}.
    """
    env = os.environ.get("TAU_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".tau"


def shapeFile(root, shape):
    return Path(root) / "config" / f"{shape}.yaml"


def readYAML(path):
    """
    Read a YAML mapping from C{path}.

    @raise ConfigError: when the file cannot be read or is not a mapping.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(path, None, f"cannot read the file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, "not a UTF-8 text file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ConfigError(path, None, f"not valid YAML{line}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"expected a mapping of fields, found a {type(data).__name__}")
    return data


def _stringList(source, name, value):
    require(source, name, isinstance(value, list), "expected a list of strings")
    for i, item in enumerate(value):
        require(source, f"{name}[{i}]", isinstance(item, str), f"expected a string, found {item!r}")
    return value


def _multiaddr(source, name, text):
    try:
        return multiaddr.Multiaddr(text)
    except (MultiaddrError, ValueError) as e:
        raise ConfigError(source, name, f"{text!r} is not a multiaddr ({e})") from None


def _listenAddr(source, name, text):
    addr = _multiaddr(source, name, text)
    names = [p.name for p in addr.protocols()]
    require(
        source,
        name,
        len(names) == 2 and names[0] in ("ip4", "ip6") and names[1] == "tcp",
        f"{text!r}: expected /ip4/ADDRESS/tcp/PORT or /ip6/ADDRESS/tcp/PORT",
    )
    return str(addr)


def _peerAddr(source, name, text):
    addr = _multiaddr(source, name, text)
    require(source, name, "p2p" in [p.name for p in addr.protocols()], f"{text!r}: expected a multiaddr ending in /p2p/PEERID")
    return str(addr)


def _port(source, name, value):
    require(
        source,
        name,
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535,
        f"expected a port number 0-65535, found {value!r}",
    )
    return value


def _apiListen(source, name, value):
    require(source, name, isinstance(value, str) and value, "expected a Twisted endpoint string")
    kind, _, rest = value.partition(":")
    if kind == "unix":
        return value
    require(source, name, kind in ("tcp", "tcp6"), f"{value!r}: expected a tcp: or unix: endpoint")
    opts = dict(part.split("=", 1) for part in rest.split(":")[1:] if "=" in part)
    interface = opts.get("interface", "")
    try:
        loopback = ipaddress.ip_address(interface.replace("\\", "")).is_loopback
    except ValueError:
        loopback = False
    require(source, name, loopback, f"{value!r}: the control API listens on loopback only (interface=127.0.0.1 or ::1)")
    return value


def _validate(source, data, configDir):
    """
    Check the type and form of each field of one source; return the cleaned
    values under tau's field names, and the fields each section it gives
    gives (by section name).  Paths are resolved against C{configDir}.
    """
    known = FIELDS + tuple(section.name for section in SECTIONS)
    unknown = sorted(set(data) - set(known))
    require(source, unknown[0] if unknown else None, not unknown, f"unknown field (known fields: {', '.join(known)})")
    given = {section.name: section.check(source, data[section.name]) for section in SECTIONS if data.get(section.name) is not None}
    out = {}
    if "privatekey" in data and data["privatekey"] is not None:
        value = data["privatekey"]
        require(source, "privatekey", isinstance(value, str), "expected the base64 of a libp2p private key")
        try:
            out["privateKey"] = PrivateKey.fromProtobuf(base64.b64decode(value, validate=True))
        except (ValueError, InvalidKey) as e:
            raise ConfigError(source, "privatekey", f"unreadable key: expected the base64 of a protobuf-encoded Ed25519 libp2p private key ({e})") from None
    if data.get("swarmkey"):
        value = data["swarmkey"]
        require(source, "swarmkey", isinstance(value, str), "expected the path of a swarm.key file")
        from tau.protocols.pnet import parseSwarmKey

        path = (configDir / value) if configDir else Path(value)
        try:
            out["swarmKey"] = parseSwarmKey(path.read_bytes())
        except OSError as e:
            raise ConfigError(source, "swarmkey", f"cannot read {path}: {e.strerror}") from None
        except ValueError as e:
            raise ConfigError(source, "swarmkey", f"{path}: {e}") from None
        out["swarmKeyPath"] = path
    for name in ("services", "protocols"):
        if data.get(name) is not None:
            value = _stringList(source, name, data[name])
            for i, svc in enumerate(value):
                require(source, f"{name}[{i}]", svc in services.KNOWN, f"unknown service {svc!r} (Taubyte's services: {', '.join(services.KNOWN)})")
            out["services"] = tuple(dict.fromkeys(value))
    if data.get("p2p-listen") is not None:
        value = _stringList(source, "p2p-listen", data["p2p-listen"])
        out["p2pListen"] = tuple(_listenAddr(source, f"p2p-listen[{i}]", v) for i, v in enumerate(value))
    if data.get("p2p-announce") is not None:
        value = _stringList(source, "p2p-announce", data["p2p-announce"])
        out["p2pAnnounce"] = tuple(str(_multiaddr(source, f"p2p-announce[{i}]", v)) for i, v in enumerate(value))
    if data.get("p2p-security") is not None:
        value = _stringList(source, "p2p-security", data["p2p-security"])
        require(source, "p2p-security", value, f"expected a list of one or more of {', '.join(SECURITY_KINDS)}")
        for i, name in enumerate(value):
            require(source, f"p2p-security[{i}]", name in SECURITY_KINDS, f"unknown security protocol {name!r} (known: {', '.join(SECURITY_KINDS)})")
            require(source, f"p2p-security[{i}]", name not in value[:i], f"{name!r} is listed twice")
        out["p2pSecurity"] = tuple(value)
    if data.get("peers") is not None:
        value = _stringList(source, "peers", data["peers"])
        out["peers"] = tuple(_peerAddr(source, f"peers[{i}]", v) for i, v in enumerate(value))
    if data.get("ports") is not None:
        value = data["ports"]
        require(source, "ports", isinstance(value, dict), "expected a mapping with main, lite and ipfs")
        for key in value:
            require(source, f"ports.{key}", key in DEFAULT_PORTS, f"unknown port (expected: {', '.join(DEFAULT_PORTS)})")
        out["ports"] = {k: _port(source, f"ports.{k}", v) for k, v in value.items()}
    if data.get("network-fqdn") is not None:
        value = data["network-fqdn"]
        require(
            source,
            "network-fqdn",
            isinstance(value, str) and re.fullmatch(r"(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)*[a-zA-Z0-9-]{1,63}\.?", value),
            f"expected a domain name, found {value!r}",
        )
        out["networkFqdn"] = value.rstrip(".")
    if data.get("domains") is not None:
        value = data["domains"]
        require(source, "domains", isinstance(value, dict), "expected a mapping with key, generated and aliases")
        for key in value:
            require(source, f"domains.{key}", key in ("key", "generated", "aliases", "services"), "unknown field (expected: key, generated, aliases, services)")
        if value.get("key") is not None:
            require(source, "domains.key", isinstance(value["key"], dict) and set(value["key"]) <= {"private", "public"}, "expected a mapping with private and public")
        if value.get("generated") is not None:
            require(source, "domains.generated", isinstance(value["generated"], str), "expected a domain name")
        if value.get("aliases") is not None:
            _stringList(source, "domains.aliases", value["aliases"])
        out["domains"] = value
    if data.get("location") is not None:
        value = data["location"]
        ok = isinstance(value, dict) and set(value) == {"lat", "long"} and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
        )
        require(source, "location", ok, "expected a mapping with numbers lat and long")
        require(source, "location.lat", -90 <= value["lat"] <= 90, "expected a latitude between -90 and 90")
        require(source, "location.long", -180 <= value["long"] <= 180, "expected a longitude between -180 and 180")
        out["location"] = {"lat": float(value["lat"]), "long": float(value["long"])}
    if data.get("plugins") is not None:
        out["plugins"] = tuple(_stringList(source, "plugins", data["plugins"]))
    if data.get("api-listen") is not None:
        out["apiListen"] = _apiListen(source, "api-listen", data["api-listen"])
    for name, key in (("perf", "perf"), ("api-token", "apiToken")):
        if data.get(name) is not None:
            require(source, name, isinstance(data[name], bool), "expected true or false")
            out[key] = data[name]
    return out, given


def _shapeDefaults(shape):
    builtin = services.builtinShapes()
    values = {
        "p2pListen": (f"/ip4/0.0.0.0/tcp/{DEFAULT_PORTS['main']}",),
    }
    if shape in builtin:
        values["services"] = tuple(builtin[shape])
    return values


def _refuseServices(source, chosen):
    for i, name in enumerate(chosen):
        if name not in services.FACTORIES:
            have = ", ".join(services.available()) or "none yet"
            raise ConfigError(
                source,
                f"services[{i}]",
                f"service {name!r} is not provided by this version of tau (available: {have})",
            )
    for group in services.EXCLUSIVE:
        both = group & set(chosen)
        if len(both) > 1:
            raise ConfigError(source, "services", f"{' and '.join(sorted(both))} never run on the same node")


def loadConfig(shape="full", root=None, configFile=None, overrides=None, create=True):
    """
    Load, validate and (on first use) initialise a node's configuration.

    @param shape: the shape name; built-in shapes are C{full}, C{gateway} and
        one per service, any other name needs a config file.
    @param root: the node's root folder; L{defaultRoot} when None.
    @param configFile: an optional YAML file whose fields override the root's.
    @param overrides: a dict of fields (Taubyte's names) that override both,
        as given on the command line.
    @param create: when true, a root seen for the first time is created with
        a new identity; otherwise a missing root is an error.

    @raise ConfigError: on any invalid value; nothing on disk is changed then.
    @rtype: L{NodeConfig}
    """
    if not isinstance(shape, str) or not SHAPE_NAME.match(shape):
        raise ConfigError("command line", "shape", f"{shape!r}: expected a name of lower-case letters, digits, - and _")
    root = Path(root).expanduser() if root else defaultRoot()
    rootFile = shapeFile(root, shape)
    configDir = root / "config"

    values = _shapeDefaults(shape)
    values["ports"] = dict(DEFAULT_PORTS)
    fields = {section.name: dict(section.defaults) for section in SECTIONS}
    sectionFrom = {section.name: "defaults" for section in SECTIONS}
    sources = []
    servicesFrom = "built-in shape " + shape
    layers = []
    if rootFile.exists():
        layers.append((str(rootFile), readYAML(rootFile), configDir))
    if configFile is not None:
        path = Path(configFile)
        layers.append((str(path), readYAML(path), path.parent.resolve()))
    if overrides:
        layers.append(("command line", dict(overrides), Path.cwd()))
    secretFiles = []
    for source, data, base in layers:
        cleaned, given = _validate(source, data, base)
        if source != "command line" and data.get("privatekey"):
            secretFiles.append(Path(source))
        if "services" in cleaned:
            servicesFrom = source
        if "ports" in cleaned:
            # a layer that gives some ports keeps the others from below
            cleaned["ports"] = {**values["ports"], **cleaned["ports"]}
        values.update(cleaned)
        for section in SECTIONS:
            if section.name in given:
                fields[section.name] = section.merge(fields[section.name], given[section.name])
                sectionFrom[section.name] = source
        sources.append(source)
    if "services" not in values:
        raise ConfigError(
            configFile or rootFile,
            "services",
            f"{shape!r} is not a built-in shape ({', '.join(services.builtinShapes())}), so its config must list its services",
        )
    _refuseServices(servicesFrom, values["services"])

    fresh = not rootFile.exists()
    if fresh and not create:
        raise ConfigError(rootFile, None, "no such node root (run `tau init` first)")
    if "privateKey" not in values:
        if not fresh:
            raise ConfigError(rootFile, "privatekey", "missing: the root's shape file holds the node's key")
        values["privateKey"] = PrivateKey.generate()
    if values.get("swarmKeyPath") is not None:
        secretFiles.append(values["swarmKeyPath"])
    peerID = values["privateKey"].peerID()
    values["sections"] = {
        section.attribute: section.finish(sectionFrom[section.name], fields[section.name], peerID) for section in SECTIONS
    }
    config = NodeConfig(root=root, shape=shape, sources=tuple(sources),
                        secretFiles=tuple(dict.fromkeys(secretFiles)), **values)
    if fresh:
        initRoot(config)
    else:
        config.dataDir.mkdir(parents=True, exist_ok=True)
    return config


def initRoot(config):
    """
    Create a root for C{config}: its folders and its shape file holding the
    identity (mode 0600).  An existing shape file is never overwritten.
    """
    rootFile = shapeFile(config.root, config.shape)
    rootFile.parent.mkdir(parents=True, exist_ok=True)
    config.dataDir.mkdir(parents=True, exist_ok=True)
    data = {
        "privatekey": base64.b64encode(config.privateKey.toProtobuf()).decode("ascii"),
        "p2p-listen": list(config.p2pListen),
        "p2p-announce": list(config.p2pAnnounce),
        "ports": dict(config.ports),
    }
    if config.shape not in services.builtinShapes():
        data["services"] = list(config.services)
    text = (
        f"# tau node config for shape {config.shape!r} (Taubyte shape-file format).\n"
        f"# Keep this file private: it holds the node's key.  PeerId {config.peerID}\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    fd = os.open(rootFile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def publicView(config):
    """
    The effective config as a dict of Taubyte's field names, the key redacted.
    """
    view = {
        "shape": config.shape,
        "root": str(config.root),
        "peer-id": str(config.peerID),
        "privatekey": "<redacted>",
        "swarmkey": str(config.swarmKeyPath) if config.swarmKeyPath else None,
        "services": list(config.services),
        "p2p-listen": list(config.p2pListen),
        "p2p-announce": list(config.p2pAnnounce),
        "p2p-security": list(config.p2pSecurity),
        "ports": dict(config.ports),
        "peers": list(config.peers),
        "network-fqdn": config.networkFqdn,
        "domains": config.domains,
        "location": config.location,
        "plugins": list(config.plugins),
        "api-listen": config.apiListen,
        "perf": config.perf,
        "api-token": config.apiToken,
    }
    for section in SECTIONS:
        view[section.name] = section.show(getattr(config, section.attribute))
    view["sources"] = list(config.sources)
    return view


def peerIDOf(addr):
    """
    The L{PeerID} at the end of a C{/p2p/} multiaddr string.
    """
    return PeerID.fromString(multiaddr.Multiaddr(addr).value_for_protocol("p2p"))
