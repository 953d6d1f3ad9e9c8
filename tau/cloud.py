"""
How a cloud admits a node: a certificate signed by the cloud's key.

A cloud has a key pair of its own (an Ed25519 libp2p key, kept offline by
its operator; its PeerId names the cloud).  Admitting a node is signing,
with that key, an admission: the node's PeerId and the services it may run::

    {"t": "tau-cloud-admission/1",
     "node": PEERID,                    the admitted node (multihash bytes)
     "services": [NAME, ...],           sorted, unique
     "pk": CLOUD-PUBLIC-KEY,            protobuf
     "s": SIGNATURE}                    over "tau-cloud-admission:" || the map without "s"

as canonical CBOR.  The node keeps it in its config (`cloud.admission`,
base64) and shows it where it must prove it belongs to the cloud: a
database whose writers are "the nodes of cloud C running service S" takes
a write signed by node N only with an admission of N for S signed by C
(see L{tau.kvdb.writers}).  Nothing here depends on the swarm key, so it
holds on a public network; an admission is not revoked (make a new cloud
key, or new databases, to shut a node out).
"""

import base64
import functools

import cbor2

from tau.configsection import Section, require
from tau.errors import ConfigError
from tau.identity import InvalidKey, PeerID, PrivateKey, PublicKey

ADMISSION = "tau-cloud-admission/1"
CONTEXT = b"tau-cloud-admission:"
#: Largest admission accepted, and most services one names.
MAX_ADMISSION = 4096
MAX_SERVICES = 32
MAX_SERVICE_NAME = 64


class InvalidAdmission(ValueError):
    """
    An admission that is malformed, not canonical or not signed by its key.
    """


class Admission:
    """
    A verified admission: C{cloud} and C{node} are L{PeerID}s, C{services}
    a tuple of names, C{data} the encoded certificate.
    """

    __slots__ = ("cloud", "node", "services", "data")

    def __init__(self, cloud, node, services, data):
        self.cloud = cloud
        self.node = node
        self.services = services
        self.data = data

    def admits(self, cloud, node, service):
        return self.cloud == cloud and self.node == node and service in self.services

    def text(self):
        return base64.b64encode(self.data).decode("ascii")

    def __repr__(self):
        return f"<Admission of {self.node} by cloud {self.cloud} for {', '.join(self.services)}>"


def checkService(name):
    if not isinstance(name, str) or not 0 < len(name) <= MAX_SERVICE_NAME or not name.isprintable() or "/" in name:
        raise InvalidAdmission(f"a service name is 1 to {MAX_SERVICE_NAME} printable characters without '/'")
    return name


def makeAdmission(cloudKey, node, services):
    """
    Sign an admission of C{node} (a L{PeerID}) for C{services} with the
    cloud's L{PrivateKey}.
    """
    services = sorted({checkService(s) for s in services})
    if not 0 < len(services) <= MAX_SERVICES:
        raise InvalidAdmission(f"an admission names 1 to {MAX_SERVICES} services")
    body = {"t": ADMISSION, "node": node.toBytes(), "services": services, "pk": cloudKey.publicKey().toProtobuf()}
    body["s"] = cloudKey.sign(CONTEXT + cbor2.dumps(body, canonical=True))
    data = cbor2.dumps(body, canonical=True)
    return Admission(cloudKey.peerID(), node, tuple(services), data)


def decodeAdmission(data):
    """
    @raise InvalidAdmission: unless C{data} is a canonical admission signed
        by the key it names.  (Every delta of a node carries the same one:
        the last 1024 verified are remembered.)
    """
    if type(data) is not bytes or len(data) > MAX_ADMISSION:
        raise InvalidAdmission(f"an admission is bytes, at most {MAX_ADMISSION} of them")
    return _decodeBytes(data)


@functools.lru_cache(maxsize=1024)
def _decodeBytes(data):
    try:
        value = cbor2.loads(data)
    except Exception as e:
        raise InvalidAdmission(f"not CBOR: {e}") from None
    if not isinstance(value, dict) or set(value) != {"t", "node", "services", "pk", "s"} or value["t"] != ADMISSION:
        raise InvalidAdmission("not an admission")
    if cbor2.dumps(value, canonical=True) != data:
        raise InvalidAdmission("not canonical CBOR")
    services = value["services"]
    if not isinstance(services, list) or not 0 < len(services) <= MAX_SERVICES or services != sorted(set(services)):
        raise InvalidAdmission(f"services: 1 to {MAX_SERVICES} names, sorted and unique")
    for s in services:
        checkService(s)
    try:
        node = PeerID.fromBytes(value["node"])
        key = PublicKey.fromProtobuf(value["pk"])
    except (InvalidKey, TypeError) as e:
        raise InvalidAdmission(f"bad key: {e}") from None
    signature = value.pop("s")
    if not isinstance(signature, bytes) or not key.verify(signature, CONTEXT + cbor2.dumps(value, canonical=True)):
        raise InvalidAdmission("bad signature")
    return Admission(key.peerID(), node, tuple(services), data)


def admissionFromText(text):
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise InvalidAdmission("expected base64") from None
    return decodeAdmission(data)


def loadCloudKey(text):
    """
    The cloud's L{PrivateKey} from the base64 of its protobuf (as a node's
    C{privatekey} is written).
    """
    try:
        return PrivateKey.fromProtobuf(base64.b64decode(text.strip(), validate=True))
    except (ValueError, InvalidKey) as e:
        raise InvalidAdmission(f"unreadable cloud key: {e}") from None


class CloudSection(Section):
    """
    The C{cloud} section of a node config: the PeerId of the cloud's key,
    and this node's admission signed by it (None: no cloud).  An admission
    must be signed by the key and name this node.
    """

    name = "cloud"
    expected = "key and admission"
    defaults = {"key": None, "admission": None}

    def clean(self, source, value):
        out = {}
        if value.get("key") is not None:
            try:
                out["key"] = PeerID.fromString(value["key"])
            except InvalidKey as e:
                raise ConfigError(source, "cloud.key", f"expected the PeerId of the cloud's key ({e})") from None
        if value.get("admission") is not None:
            require(source, "cloud.admission", isinstance(value["admission"], str), "expected the base64 of an admission (tau cloud admit)")
            try:
                out["admission"] = admissionFromText(value["admission"])
            except InvalidAdmission as e:
                raise ConfigError(source, "cloud.admission", f"unreadable admission: {e}") from None
        return out

    def finish(self, source, fields, peerID):
        admission = fields["admission"]
        if admission is not None:
            key = fields["key"]
            require(source, "cloud.admission", key is not None, "an admission needs cloud.key, the PeerId of the key that signed it")
            require(source, "cloud.admission", admission.cloud == key, f"signed by {admission.cloud}, not by cloud.key {key}")
            require(source, "cloud.admission", admission.node == peerID, f"admits node {admission.node}, not this node ({peerID})")
        return dict(fields)

    def show(self, value):
        return {k: None if v is None else str(v) if k == "key" else v.text() for k, v in value.items()}
