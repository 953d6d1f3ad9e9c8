"""
Node configuration: the YAML of Taubyte's shape files, validated, with defaults.

Precedence, highest first: command-line options, C{--config FILE}, the root's
own shape file C{ROOT/config/<shape>.yaml}, built-in defaults.  The root's shape
file is where a node keeps its identity: it is written on first start (mode
0600) and read on every later start, so the node keeps its PeerId.

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
from tau.cloud import InvalidAdmission, admissionFromText
from tau.errors import ConfigError
from tau.identity import InvalidKey, PeerID, PrivateKey

DEFAULT_PORTS = {"main": 4242, "lite": 4247, "ipfs": 4252}
DEFAULT_API_LISTEN = "tcp:0:interface=127.0.0.1"
# The DHT: mode (auto = server when the node listens), provider record
# lifetime and how often our own records are republished, in seconds; how
# many of other peers' provider records it keeps, in all, in bytes and per
# providing peer (beyond the first two the oldest are evicted).
DEFAULT_DHT = {
    "mode": "auto",
    "provider-expiry": 48 * 3600.0,
    "republish": 22 * 3600.0,
    "max-provider-records": 1_000_000,
    "max-provider-bytes": 128 << 20,
    "max-provider-records-per-peer": 10_000,
}
# The connection manager: watermarks, grace for new connections, idle close;
# and the inbound limits (tau.inbound): upgrades in progress in all and per
# address (an IPv4 address, an IPv6 /64), inbound connections per address,
# seconds a new connection may stay silent (0: no limit for the counts).
DEFAULT_CONNECTIONS = {
    "low": 32,
    "high": 96,
    "grace": 20.0,
    "idle": 300.0,
    "max-upgrades": 128,
    "max-upgrades-per-ip": 8,
    "max-per-ip": 32,
    "first-bytes": 3.0,
}
# Circuit relay v2 service: auto (on for a full shape that listens for peers;
# the node's reachability may switch it), on, off; and its limits (go-libp2p's
# defaults): reservation lifetime, reservations in all and per IP address,
# RESERVE requests per peer and minute, circuits per peer and in all, and
# per circuit its duration (seconds) and bytes per direction (0: no limit).
DEFAULT_RELAY = {
    "service": "auto",
    "reservation-ttl": 3600.0,
    "max-reservations": 128,
    "max-reservations-per-ip": 8,
    "reserve-rate": 8,
    "max-circuits": 16,
    "max-circuits-total": 1024,
    "duration": 120,
    "data": 131072,
}
# AutoNAT: answer peers' dial-back requests (service), also dial back
# peers seen at private or loopback IPs (allow-private: a LAN or a test
# network), the verdict (auto: ask peers; public or private: forced), the
# delay before the first probe, and whether a private node holds relay
# reservations (auto-relay).
DEFAULT_AUTONAT = {
    "service": True,
    "allow-private": False,
    "reachability": "auto",
    "boot-delay": 15.0,
    "auto-relay": True,
}
# The block store: the most bytes of unpinned blocks it keeps before the
# least recently used are collected (None: no automatic GC), and how often
# (seconds) it checks; it also checks after every `budget / 16` bytes written.
DEFAULT_STORAGE = {"budget": None, "gc-interval": 3600.0}
# The cloud this node belongs to: the PeerId of the cloud's key, and this
# node's admission signed by it (see tau/cloud.py); none: no cloud.
DEFAULT_CLOUD = {"key": None, "admission": None}
# Replicated key/value databases: the bytes of deltas each writer may
# write in a database created on this node (the quota goes into the
# database's genesis, so every replica enforces the same).
DEFAULT_KVDB = {"writer-quota": 1 << 30}
SHAPE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gib": 2**30,
    "t": 10**12, "tb": 10**12, "tib": 2**40,
    "p": 10**15, "pb": 10**15, "pib": 2**50,
}


def parseSize(value):
    """
    A size in bytes from a whole number or a string like C{"10GiB"},
    C{"500 MB"} or C{"1.5G"} (as Taubyte's configs read sizes: KB, MB, GB
    are powers of 1000, KiB, MiB, GiB of 1024).

    @raise ValueError: with what is wrong.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value}: negative")
        return value
    if isinstance(value, float):
        raise ValueError(f"invalid size {value!r}: expected a whole number of bytes or a string like 10GiB")
    if not isinstance(value, str):
        raise ValueError(f"invalid size {value!r}")
    m = _SIZE.match(value)
    unit = m and _SIZE_UNITS.get(m.group(2).lower())
    if unit is None:
        raise ValueError(f"invalid size {value!r}: expected a number and a unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)")
    return int(float(m.group(1)) * unit)

# Every field a node config may hold; Taubyte's names, plus tau's own last.
FIELDS = (
    "privatekey",
    "swarmkey",
    "services",
    "protocols",
    "p2p-listen",
    "p2p-announce",
    "ports",
    "peers",
    "network-fqdn",
    "domains",
    "location",
    "plugins",
    "api-listen",
    "connections",
    "dht",
    "relay",
    "autonat",
    "storage",
    "perf",
    "api-token",
    "cloud",
    "kvdb",
)


@dataclass(frozen=True)
class NodeConfig:
    """
    A validated node configuration.  Build it with L{loadConfig}.
    """

    root: Path
    shape: str
    services: tuple
    privateKey: PrivateKey
    p2pListen: tuple = ()
    p2pAnnounce: tuple = ()
    ports: dict = field(default_factory=lambda: dict(DEFAULT_PORTS))
    peers: tuple = ()
    networkFqdn: str = ""
    domains: dict = field(default_factory=dict)
    location: dict = None
    plugins: tuple = ()
    swarmKey: bytes = None
    swarmKeyPath: Path = None
    apiListen: str = DEFAULT_API_LISTEN
    connections: dict = field(default_factory=lambda: dict(DEFAULT_CONNECTIONS))
    dht: dict = field(default_factory=lambda: dict(DEFAULT_DHT))
    relay: dict = field(default_factory=lambda: dict(DEFAULT_RELAY))
    autonat: dict = field(default_factory=lambda: dict(DEFAULT_AUTONAT))
    storage: dict = field(default_factory=lambda: dict(DEFAULT_STORAGE))
    perf: bool = False
    apiToken: bool = False
    cloud: dict = field(default_factory=lambda: dict(DEFAULT_CLOUD))
    kvdb: dict = field(default_factory=lambda: dict(DEFAULT_KVDB))
    sources: tuple = ()
    secretFiles: tuple = ()

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
        return replace(self, **changes)


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


def _check(source, name, condition, expected):
    if not condition:
        raise ConfigError(source, name, expected)


def _stringList(source, name, value):
    _check(source, name, isinstance(value, list), "expected a list of strings")
    for i, item in enumerate(value):
        _check(source, f"{name}[{i}]", isinstance(item, str), f"expected a string, found {item!r}")
    return value


def _multiaddr(source, name, text):
    try:
        return multiaddr.Multiaddr(text)
    except (MultiaddrError, ValueError) as e:
        raise ConfigError(source, name, f"{text!r} is not a multiaddr ({e})") from None


def _listenAddr(source, name, text):
    addr = _multiaddr(source, name, text)
    names = [p.name for p in addr.protocols()]
    _check(
        source,
        name,
        len(names) == 2 and names[0] in ("ip4", "ip6") and names[1] == "tcp",
        f"{text!r}: expected /ip4/ADDRESS/tcp/PORT or /ip6/ADDRESS/tcp/PORT",
    )
    return str(addr)


def _peerAddr(source, name, text):
    addr = _multiaddr(source, name, text)
    _check(source, name, "p2p" in [p.name for p in addr.protocols()], f"{text!r}: expected a multiaddr ending in /p2p/PEERID")
    return str(addr)


def _port(source, name, value):
    _check(
        source,
        name,
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535,
        f"expected a port number 0-65535, found {value!r}",
    )
    return value


def _apiListen(source, name, value):
    _check(source, name, isinstance(value, str) and value, "expected a Twisted endpoint string")
    kind, _, rest = value.partition(":")
    if kind == "unix":
        return value
    _check(source, name, kind in ("tcp", "tcp6"), f"{value!r}: expected a tcp: or unix: endpoint")
    opts = dict(part.split("=", 1) for part in rest.split(":")[1:] if "=" in part)
    interface = opts.get("interface", "")
    try:
        loopback = ipaddress.ip_address(interface.replace("\\", "")).is_loopback
    except ValueError:
        loopback = False
    _check(source, name, loopback, f"{value!r}: the control API listens on loopback only (interface=127.0.0.1 or ::1)")
    return value


def _validate(source, data, configDir):
    """
    Check the type and form of each field of one source; return the cleaned
    values under tau's field names.  Paths are resolved against C{configDir}.
    """
    unknown = sorted(set(data) - set(FIELDS))
    _check(source, unknown[0] if unknown else None, not unknown, f"unknown field (known fields: {', '.join(FIELDS)})")
    out = {}
    if "privatekey" in data and data["privatekey"] is not None:
        value = data["privatekey"]
        _check(source, "privatekey", isinstance(value, str), "expected the base64 of a libp2p private key")
        try:
            out["privateKey"] = PrivateKey.fromProtobuf(base64.b64decode(value, validate=True))
        except (ValueError, InvalidKey) as e:
            raise ConfigError(source, "privatekey", f"unreadable key: expected the base64 of a protobuf-encoded Ed25519 libp2p private key ({e})") from None
    if data.get("swarmkey"):
        value = data["swarmkey"]
        _check(source, "swarmkey", isinstance(value, str), "expected the path of a swarm.key file")
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
                _check(source, f"{name}[{i}]", svc in services.KNOWN, f"unknown service {svc!r} (Taubyte's services: {', '.join(services.KNOWN)})")
            out["services"] = tuple(dict.fromkeys(value))
    if data.get("p2p-listen") is not None:
        value = _stringList(source, "p2p-listen", data["p2p-listen"])
        out["p2pListen"] = tuple(_listenAddr(source, f"p2p-listen[{i}]", v) for i, v in enumerate(value))
    if data.get("p2p-announce") is not None:
        value = _stringList(source, "p2p-announce", data["p2p-announce"])
        out["p2pAnnounce"] = tuple(str(_multiaddr(source, f"p2p-announce[{i}]", v)) for i, v in enumerate(value))
    if data.get("peers") is not None:
        value = _stringList(source, "peers", data["peers"])
        out["peers"] = tuple(_peerAddr(source, f"peers[{i}]", v) for i, v in enumerate(value))
    if data.get("ports") is not None:
        value = data["ports"]
        _check(source, "ports", isinstance(value, dict), "expected a mapping with main, lite and ipfs")
        for key in value:
            _check(source, f"ports.{key}", key in DEFAULT_PORTS, f"unknown port (expected: {', '.join(DEFAULT_PORTS)})")
        out["ports"] = {k: _port(source, f"ports.{k}", v) for k, v in value.items()}
    if data.get("network-fqdn") is not None:
        value = data["network-fqdn"]
        _check(
            source,
            "network-fqdn",
            isinstance(value, str) and re.fullmatch(r"(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)*[a-zA-Z0-9-]{1,63}\.?", value),
            f"expected a domain name, found {value!r}",
        )
        out["networkFqdn"] = value.rstrip(".")
    if data.get("domains") is not None:
        value = data["domains"]
        _check(source, "domains", isinstance(value, dict), "expected a mapping with key, generated and aliases")
        for key in value:
            _check(source, f"domains.{key}", key in ("key", "generated", "aliases", "services"), "unknown field (expected: key, generated, aliases, services)")
        if value.get("key") is not None:
            _check(source, "domains.key", isinstance(value["key"], dict) and set(value["key"]) <= {"private", "public"}, "expected a mapping with private and public")
        if value.get("generated") is not None:
            _check(source, "domains.generated", isinstance(value["generated"], str), "expected a domain name")
        if value.get("aliases") is not None:
            _stringList(source, "domains.aliases", value["aliases"])
        out["domains"] = value
    if data.get("location") is not None:
        value = data["location"]
        ok = isinstance(value, dict) and set(value) == {"lat", "long"} and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
        )
        _check(source, "location", ok, "expected a mapping with numbers lat and long")
        _check(source, "location.lat", -90 <= value["lat"] <= 90, "expected a latitude between -90 and 90")
        _check(source, "location.long", -180 <= value["long"] <= 180, "expected a longitude between -180 and 180")
        out["location"] = {"lat": float(value["lat"]), "long": float(value["long"])}
    if data.get("plugins") is not None:
        out["plugins"] = tuple(_stringList(source, "plugins", data["plugins"]))
    if data.get("api-listen") is not None:
        out["apiListen"] = _apiListen(source, "api-listen", data["api-listen"])
    if data.get("connections") is not None:
        out["connections"] = _connections(source, data["connections"])
    if data.get("dht") is not None:
        out["dht"] = _dht(source, data["dht"])
    if data.get("relay") is not None:
        out["relay"] = _relay(source, data["relay"])
    if data.get("autonat") is not None:
        out["autonat"] = _autonat(source, data["autonat"])
    if data.get("storage") is not None:
        out["storage"] = _storage(source, data["storage"])
    for name, key in (("perf", "perf"), ("api-token", "apiToken")):
        if data.get(name) is not None:
            _check(source, name, isinstance(data[name], bool), "expected true or false")
            out[key] = data[name]
    if data.get("cloud") is not None:
        out["cloud"] = _cloud(source, data["cloud"])
    if data.get("kvdb") is not None:
        out["kvdb"] = _kvdb(source, data["kvdb"])
    return out


def _section(source, name, value, defaults, expected):
    """
    Check that C{value} is a mapping whose keys are all in C{defaults}.
    """
    _check(source, name, isinstance(value, dict), f"expected a mapping with {expected}")
    for key in value:
        _check(source, f"{name}.{key}", key in defaults, "unknown field (expected: " + ", ".join(defaults) + ")")


def _isNumber(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _seconds(source, name, value, keys, positive=True):
    for key in keys:
        if key in value:
            v = value[key]
            if positive:
                _check(source, f"{name}.{key}", _isNumber(v) and v > 0, "expected a positive number of seconds")
            else:
                _check(source, f"{name}.{key}", _isNumber(v) and v >= 0, "expected a number of seconds")


def _wholeNumbers(source, name, value, keys, expected):
    for key in keys:
        if key in value:
            v = value[key]
            _check(source, f"{name}.{key}", isinstance(v, int) and not isinstance(v, bool) and v >= 0, expected)


def _choice(source, name, value, key, choices, expected):
    if key in value:
        _check(source, f"{name}.{key}", value[key] in choices, expected)


def _connections(source, value):
    _section(source, "connections", value, DEFAULT_CONNECTIONS, ", ".join(DEFAULT_CONNECTIONS))
    _wholeNumbers(source, "connections", value, ("low", "high"), "expected a whole number of connections")
    _wholeNumbers(
        source,
        "connections",
        value,
        ("max-upgrades", "max-upgrades-per-ip", "max-per-ip"),
        "expected a whole number of connections (0: no limit)",
    )
    _seconds(source, "connections", value, ("grace", "idle", "first-bytes"))
    return dict(value)


def _dht(source, value):
    _section(source, "dht", value, DEFAULT_DHT, ", ".join(DEFAULT_DHT))
    _choice(source, "dht", value, "mode", ("auto", "server", "client"), "expected auto, server or client")
    _seconds(source, "dht", value, ("provider-expiry", "republish"))
    out = dict(value)
    for key in ("max-provider-records", "max-provider-records-per-peer"):
        if key in value:
            v = value[key]
            _check(source, f"dht.{key}", isinstance(v, int) and not isinstance(v, bool) and v > 0, "expected a whole number of records above 0")
    if "max-provider-bytes" in value:
        try:
            out["max-provider-bytes"] = parseSize(value["max-provider-bytes"])
        except ValueError as e:
            raise ConfigError(source, "dht.max-provider-bytes", str(e)) from None
        _check(source, "dht.max-provider-bytes", out["max-provider-bytes"] >= 4096, "expected a size of at least 4 KiB")
    return out


def _storage(source, value):
    _section(source, "storage", value, DEFAULT_STORAGE, "budget and gc-interval")
    out = dict(value)
    if "budget" in value:
        v = value["budget"]
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "off")):
            out["budget"] = None
        else:
            try:
                out["budget"] = parseSize(v)
            except ValueError as e:
                raise ConfigError(source, "storage.budget", f"{e}; or none for no automatic GC") from None
            _check(source, "storage.budget", out["budget"] > 0, "expected a size above 0 bytes (or none for no automatic GC)")
    _seconds(source, "storage", value, ("gc-interval",))
    if "gc-interval" in value:
        out["gc-interval"] = float(value["gc-interval"])
    return out


def _cloud(source, value):
    _section(source, "cloud", value, DEFAULT_CLOUD, "key and admission")
    out = {}
    if value.get("key") is not None:
        try:
            out["key"] = PeerID.fromString(value["key"])
        except InvalidKey as e:
            raise ConfigError(source, "cloud.key", f"expected the PeerId of the cloud's key ({e})") from None
    if value.get("admission") is not None:
        _check(source, "cloud.admission", isinstance(value["admission"], str), "expected the base64 of an admission (tau cloud admit)")
        try:
            out["admission"] = admissionFromText(value["admission"])
        except InvalidAdmission as e:
            raise ConfigError(source, "cloud.admission", f"unreadable admission: {e}") from None
    return out


def _checkCloud(source, cloud, peerID):
    """
    An admission must be signed by the cloud's key and name this node.
    """
    admission = cloud.get("admission")
    if admission is None:
        return
    _check(source, "cloud.admission", cloud.get("key") is not None, "an admission needs cloud.key, the PeerId of the key that signed it")
    _check(source, "cloud.admission", admission.cloud == cloud["key"], f"signed by {admission.cloud}, not by cloud.key {cloud['key']}")
    _check(source, "cloud.admission", admission.node == peerID, f"admits node {admission.node}, not this node ({peerID})")


def _kvdb(source, value):
    _section(source, "kvdb", value, DEFAULT_KVDB, "writer-quota")
    out = dict(value)
    if "writer-quota" in value:
        try:
            out["writer-quota"] = parseSize(value["writer-quota"])
        except ValueError as e:
            raise ConfigError(source, "kvdb.writer-quota", str(e)) from None
        _check(source, "kvdb.writer-quota", out["writer-quota"] > 0, "expected a size above 0 bytes")
    return out


def _autonat(source, value):
    _section(source, "autonat", value, DEFAULT_AUTONAT, ", ".join(DEFAULT_AUTONAT))
    for key in ("service", "allow-private", "auto-relay"):
        if key in value:
            _check(source, f"autonat.{key}", isinstance(value[key], bool), "expected true or false")
    _choice(source, "autonat", value, "reachability", ("auto", "public", "private"), "expected auto, public or private")
    _seconds(source, "autonat", value, ("boot-delay",), positive=False)
    return dict(value)


def _relay(source, value):
    _section(source, "relay", value, DEFAULT_RELAY, "service and limits")
    _choice(source, "relay", value, "service", ("auto", "on", "off"), "expected auto, on or off")
    _seconds(source, "relay", value, ("reservation-ttl",))
    _wholeNumbers(
        source,
        "relay",
        value,
        ("max-reservations", "max-reservations-per-ip", "reserve-rate", "max-circuits", "max-circuits-total", "duration", "data"),
        "expected a whole number (0: no limit)",
    )
    if "duration" in value:
        _check(source, "relay.duration", value["duration"] < 1 << 32, "expected fewer than 2^32 seconds")
    return dict(value)


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
    values["dht"] = dict(DEFAULT_DHT)
    values["relay"] = dict(DEFAULT_RELAY)
    values["autonat"] = dict(DEFAULT_AUTONAT)
    values["storage"] = dict(DEFAULT_STORAGE)
    values["cloud"] = dict(DEFAULT_CLOUD)
    values["kvdb"] = dict(DEFAULT_KVDB)
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
        cleaned = _validate(source, data, base)
        if source != "command line" and data.get("privatekey"):
            secretFiles.append(Path(source))
        if "services" in cleaned:
            servicesFrom = source
        for mapping in ("ports", "connections", "dht", "relay", "autonat", "storage", "cloud", "kvdb"):
            # a layer that gives some keys keeps the others from below
            if mapping in cleaned and mapping in values:
                cleaned[mapping] = {**values[mapping], **cleaned[mapping]}
        values.update(cleaned)
        sources.append(source)
    if "services" not in values:
        raise ConfigError(
            configFile or rootFile,
            "services",
            f"{shape!r} is not a built-in shape ({', '.join(services.builtinShapes())}), so its config must list its services",
        )
    _refuseServices(servicesFrom, values["services"])
    conns = dict(DEFAULT_CONNECTIONS)
    conns.update(values.get("connections", {}))
    if conns["low"] > conns["high"]:
        raise ConfigError(servicesFrom, "connections", "low must not be above high")
    values["connections"] = conns

    fresh = not rootFile.exists()
    if fresh and not create:
        raise ConfigError(rootFile, None, "no such node root (run `tau init` first)")
    if "privateKey" not in values:
        if not fresh:
            raise ConfigError(rootFile, "privatekey", "missing: the root's shape file holds the node's key")
        values["privateKey"] = PrivateKey.generate()
    if values.get("swarmKeyPath") is not None:
        secretFiles.append(values["swarmKeyPath"])
    _checkCloud(sources[-1] if sources else "defaults", values["cloud"], values["privateKey"].peerID())
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
        "ports": dict(config.ports),
        "peers": list(config.peers),
        "network-fqdn": config.networkFqdn,
        "domains": config.domains,
        "location": config.location,
        "plugins": list(config.plugins),
        "api-listen": config.apiListen,
        "connections": dict(config.connections),
        "dht": dict(config.dht),
        "relay": dict(config.relay),
        "autonat": dict(config.autonat),
        "storage": dict(config.storage),
        "perf": config.perf,
        "api-token": config.apiToken,
        "cloud": {k: None if v is None else str(v) if k == "key" else v.text() for k, v in config.cloud.items()},
        "kvdb": dict(config.kvdb),
        "sources": list(config.sources),
    }
    return view


def peerIDOf(addr):
    """
    The L{PeerID} at the end of a C{/p2p/} multiaddr string.
    """
    return PeerID.fromString(multiaddr.Multiaddr(addr).value_for_protocol("p2p"))
