"""
The Kademlia key space: 256-bit integers, the sha256 of a key's bytes.

Which bytes are hashed (libp2p kad-dht spec):

  - a peer: its peer ID multihash (L{tau.identity.PeerID.toBytes});
  - a provider record: the I{multihash} of the CID, never the CID itself, so
    CIDv0 and CIDv1 of the same content meet at the same place;
  - a value record: the raw record key (e.g. C{b"/pk/" + peerIDBytes}).

Distances are plain Python integers: C{a ^ b}.
"""

import hashlib

import cid as pycid

from tau.protocols import varint

__all__ = [
    "KEY_BITS",
    "InvalidKey",
    "kadID",
    "peerKadID",
    "distance",
    "commonPrefixLength",
    "bucketIndex",
    "providerKey",
    "isMultihash",
    "randomKeyWithPrefix",
]

KEY_BITS = 256

#: go-libp2p-kad-dht refuses provider keys longer than this.
MAX_PROVIDER_KEY = 80


class InvalidKey(ValueError):
    """
    A key is not usable for the DHT operation asked for.
    """


def kadID(key):
    """
    The position of C{key} (bytes) in the key space, as an integer.
    """
    return int.from_bytes(hashlib.sha256(key).digest(), "big")


def peerKadID(peerID):
    """
    The position of a L{tau.identity.PeerID} in the key space.
    """
    return kadID(peerID.toBytes())


def distance(a, b):
    """
    The XOR distance between two positions (integers from L{kadID}).
    """
    return a ^ b


def commonPrefixLength(a, b):
    """
    How many leading bits two positions share: 256 when they are equal.
    """
    return KEY_BITS - (a ^ b).bit_length()


def bucketIndex(selfID, other):
    """
    The routing-table bucket C{other} (a position) falls into, seen from
    C{selfID}: its common prefix length, at most 255.
    """
    return min(commonPrefixLength(selfID, other), KEY_BITS - 1)


def isMultihash(data):
    """
    True when C{data} is one well-formed multihash: a code varint, a length
    varint and exactly that many digest bytes.
    """
    try:
        code = varint.decode(data, 0)
        if code is None:
            return False
        length = varint.decode(data, code[1], 1 << 16)
    except varint.VarintError:
        return False
    if length is None:
        return False
    return length[1] + length[0] == len(data)


def providerKey(key):
    """
    The provider-record key for a CID (a C{cid} object or its text) or for a
    multihash given as bytes: the multihash bytes.

    @raise InvalidKey: when C{key} is neither.
    """
    if isinstance(key, str):
        try:
            key = pycid.from_string(key)
        except Exception as e:
            raise InvalidKey(f"not a CID: {key!r} ({e})") from None
    if isinstance(key, (pycid.CIDv0, pycid.CIDv1)):
        key = bytes(key.multihash)
    if not isinstance(key, (bytes, bytearray)):
        raise InvalidKey(f"a provider key is a CID or multihash bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) > MAX_PROVIDER_KEY:
        raise InvalidKey(f"provider key longer than {MAX_PROVIDER_KEY} bytes")
    if not isMultihash(key):
        raise InvalidKey("provider key is not a multihash")
    return key


def randomKeyWithPrefix(selfID, cpl, rng, maxTries=1 << 20):
    """
    A random key, shaped like a sha2-256 peer ID (C{0x12 0x20} + 32 bytes) so
    that every implementation accepts it in FIND_NODE, whose position shares
    exactly C{cpl} leading bits with C{selfID}: it falls in bucket C{cpl}.

    sha256 cannot be inverted, so this tries random keys: about C{2**(cpl+1)}
    hashes.  go-libp2p-kbucket has the same limit and refreshes buckets only up
    to cpl 15 (about 65,000 hashes); deeper buckets are covered by the lookup
    of our own ID.

    @param rng: a L{random.Random}.
    @raise InvalidKey: if no key is found in C{maxTries} attempts.
    """
    if not 0 <= cpl < KEY_BITS:
        raise InvalidKey(f"no bucket {cpl}")
    shift = KEY_BITS - cpl - 1
    want = (selfID >> shift) ^ 1
    sha = hashlib.sha256
    getrandbits = rng.getrandbits
    for _ in range(maxTries):
        key = b"\x12\x20" + getrandbits(256).to_bytes(32, "big")
        if int.from_bytes(sha(key).digest(), "big") >> shift == want:
            return key
    raise InvalidKey(f"no key found for bucket {cpl} in {maxTries} tries")
