"""
Binary CIDs, Bitswap block prefixes and block verification.

py-cid parses text CIDs well but not binary CIDv0 (a bare multihash), and
it guesses at encodings; on the wire we need a strict parser.  Everything
here takes and returns py-cid L{cid.CIDv0} / L{cid.CIDv1} objects, built
directly from the parsed parts.

A Bitswap 1.1+ block travels as C{(prefix, data)}: the prefix is
C{uvarint(version) uvarint(codec) uvarint(mhCode) uvarint(mhLength)}; the
receiver hashes C{data} itself and rebuilds the CID, so a block can only be
the block whose hash it carries.
"""

import hashlib

import cid as pycid
import multicodec.constants

from tau.protocols import varint

#: The longest CID accepted on the wire (boxo's limit).
MAX_CID_LENGTH = 168

SHA2_256 = 0x12
IDENTITY = 0x00
RAW = 0x55
DAG_PB = 0x70

#: Largest identity multihash digest accepted.
MAX_IDENTITY_DIGEST = 128


class InvalidCID(ValueError):
    """
    Bytes that are not a well-formed binary CID or block prefix.
    """


class UnsupportedHash(InvalidCID):
    """
    A multihash function we cannot compute.
    """


def _sha3(name):
    return lambda data: hashlib.new(name, data).digest()


# multihash code -> (function, natural digest length)
_HASHES = {
    0x12: (lambda d: hashlib.sha256(d).digest(), 32),
    0x13: (lambda d: hashlib.sha512(d).digest(), 64),
    0x14: (_sha3("sha3_512"), 64),
    0x15: (_sha3("sha3_384"), 48),
    0x16: (_sha3("sha3_256"), 32),
    0x17: (_sha3("sha3_224"), 28),
    0x20: (lambda d: hashlib.sha384(d).digest(), 48),
    0xB220: (lambda d: hashlib.blake2b(d, digest_size=32).digest(), 32),
    0xB240: (lambda d: hashlib.blake2b(d, digest_size=64).digest(), 64),
    0xB260: (lambda d: hashlib.blake2s(d, digest_size=32).digest(), 32),
}

_CODEC_NAMES = multicodec.constants.CODE_TABLE
_CODEC_CODES = multicodec.constants.NAME_TABLE


def _uvarint(data, offset, what):
    try:
        decoded = varint.decode(data, offset)
    except varint.VarintError as e:
        raise InvalidCID(f"bad varint in {what}: {e}") from None
    if decoded is None:
        raise InvalidCID(f"truncated {what}")
    return decoded


def _parseMultihash(data, offset):
    code, offset = _uvarint(data, offset, "multihash code")
    length, offset = _uvarint(data, offset, "multihash length")
    end = offset + length
    if end > len(data):
        raise InvalidCID("truncated multihash digest")
    return code, length, end


def splitMultihash(mh):
    """
    C{(code, digest)} of the multihash C{mh} (nothing may follow the digest).

    @raise InvalidCID: on a malformed multihash.
    """
    code, length, end = _parseMultihash(mh, 0)
    if end != len(mh):
        raise InvalidCID("trailing bytes after the multihash digest")
    return code, mh[end - length:end]


def canHash(code):
    """
    Whether L{verifyMultihash} can check multihash function C{code}.
    """
    return code == IDENTITY or code in _HASHES


def verifyMultihash(mh, data):
    """
    Whether C{data} hashes to the multihash C{mh} (an identity multihash:
    whether C{data} is its digest, of any length).

    @raise UnsupportedHash: for a function we do not have.
    @raise InvalidCID: on a malformed multihash.
    """
    code, digest = splitMultihash(mh)
    if code == IDENTITY:
        return bytes(data) == digest
    entry = _HASHES.get(code)
    if entry is None:
        raise UnsupportedHash(f"unsupported multihash function 0x{code:x}")
    function, natural = entry
    if not 0 < len(digest) <= natural:
        return False
    return function(data)[:len(digest)] == digest


def codecCode(c):
    """
    The multicodec number of a CID object's codec.
    """
    try:
        return _CODEC_CODES[c.codec]
    except KeyError:
        raise InvalidCID(f"unknown codec {c.codec!r}") from None


def cidText(c):
    """
    The usual text form: base58btc for CIDv0, base32 (C{b...}) for CIDv1.
    """
    if c.version == 0:
        return str(c)
    return c.encode("base32").decode("ascii")


def _makeCID(version, codec, mh):
    if version == 0:
        return pycid.CIDv0(mh)
    name = _CODEC_NAMES.get(codec)
    if name is None:
        raise InvalidCID(f"unknown codec 0x{codec:x}")
    return pycid.CIDv1(name, mh)


def cidFromBytes(data):
    """
    Parse a binary CID exactly (no trailing bytes).

    @raise InvalidCID: on anything else.
    """
    data = bytes(data)
    if not data:
        raise InvalidCID("empty CID")
    if len(data) > MAX_CID_LENGTH:
        raise InvalidCID(f"CID longer than {MAX_CID_LENGTH} bytes")
    if len(data) == 34 and data[0] == SHA2_256 and data[1] == 32:
        return pycid.CIDv0(data)
    version, offset = _uvarint(data, 0, "CID version")
    if version != 1:
        raise InvalidCID(f"unsupported CID version {version}")
    codec, offset = _uvarint(data, offset, "CID codec")
    start = offset
    _, _, end = _parseMultihash(data, offset)
    if end != len(data):
        raise InvalidCID("trailing bytes after the CID")
    return _makeCID(1, codec, data[start:])


def cidToBytes(c):
    """
    The binary form of a CID object (CIDv0: the bare multihash).
    """
    return c.buffer


def parseCID(value):
    """
    A CID object from a CID object, text or binary form.
    """
    if isinstance(value, (pycid.CIDv0, pycid.CIDv1)):
        return value
    if isinstance(value, str):
        try:
            return pycid.from_string(value)
        except Exception as e:
            raise InvalidCID(f"bad CID {value!r}: {e}") from None
    return cidFromBytes(value)


def prefixOf(c):
    """
    The Bitswap block prefix of a CID object.
    """
    mh = c.multihash
    code, offset = _uvarint(mh, 0, "multihash code")
    length, _ = _uvarint(mh, offset, "multihash length")
    codec = DAG_PB if c.version == 0 else codecCode(c)
    return varint.encode(c.version) + varint.encode(codec) + varint.encode(code) + varint.encode(length)


def parsePrefix(prefix):
    """
    @return: C{(version, codec, mhCode, mhLength)}.
    @raise InvalidCID: on a malformed prefix.
    """
    prefix = bytes(prefix)
    version, offset = _uvarint(prefix, 0, "prefix version")
    codec, offset = _uvarint(prefix, offset, "prefix codec")
    code, offset = _uvarint(prefix, offset, "prefix multihash code")
    length, offset = _uvarint(prefix, offset, "prefix multihash length")
    if offset != len(prefix):
        raise InvalidCID("trailing bytes after the block prefix")
    if version not in (0, 1):
        raise InvalidCID(f"unsupported CID version {version}")
    if version == 0 and (codec != DAG_PB or code != SHA2_256 or length != 32):
        raise InvalidCID("a CIDv0 prefix must be dag-pb sha2-256/32")
    if version == 1 and codec not in _CODEC_NAMES:
        raise InvalidCID(f"unknown codec 0x{codec:x}")
    return version, codec, code, length


def multihashOf(code, length, data):
    """
    Hash C{data} into a multihash with function C{code} truncated to
    C{length} bytes.

    @raise UnsupportedHash: for a function we do not have.
    @raise InvalidCID: for an impossible length.
    """
    if code == IDENTITY:
        if length != len(data) or length > MAX_IDENTITY_DIGEST:
            raise InvalidCID("identity multihash length does not match its data")
        digest = bytes(data)
    else:
        entry = _HASHES.get(code)
        if entry is None:
            raise UnsupportedHash(f"unsupported multihash function 0x{code:x}")
        function, natural = entry
        if length > natural or length < 1:
            raise InvalidCID(f"multihash length {length} impossible for function 0x{code:x}")
        digest = function(data)[:length]
    return varint.encode(code) + varint.encode(length) + digest


def cidForBlock(prefix, data):
    """
    The CID of C{data} under the block prefix C{prefix}, computed by
    hashing C{data}.

    @raise InvalidCID: on a bad prefix (L{UnsupportedHash} for an unknown
        hash function).
    """
    version, codec, code, length = parsePrefix(prefix)
    return _makeCID(version, codec, multihashOf(code, length, data))


def verifyBlock(c, data):
    """
    True when C{data} hashes to the multihash of C{c}.
    """
    mh = c.multihash
    try:
        code, length, end = _parseMultihash(mh, 0)
        return multihashOf(code, length, data) == mh
    except InvalidCID:
        return False


def makeCID(data, codec=RAW, version=1):
    """
    The sha2-256 CID of C{data} (CIDv1 C{codec}, or CIDv0 for dag-pb).
    """
    mh = multihashOf(SHA2_256, 32, data)
    return _makeCID(version, codec if version == 1 else DAG_PB, mh)


def dagPbLinks(data):
    """
    The CIDs linked from a dag-pb node (C{PBNode.Links[].Hash}).

    @raise InvalidCID: when C{data} is not a dag-pb node.
    """
    data = bytes(data)
    out = []
    offset = 0
    end = len(data)
    while offset < end:
        key, offset = _uvarint(data, offset, "dag-pb field key")
        field, wire = key >> 3, key & 7
        if wire != 2:
            raise InvalidCID(f"dag-pb: unexpected wire type {wire} for field {field}")
        length, offset = _uvarint(data, offset, "dag-pb field length")
        stop = offset + length
        if stop > end:
            raise InvalidCID("dag-pb: truncated field")
        if field == 2:
            out.append(_linkHash(data, offset, stop))
        elif field != 1:
            raise InvalidCID(f"dag-pb: unknown field {field}")
        offset = stop
    return out


def _linkHash(data, offset, end):
    found = None
    while offset < end:
        key, offset = _uvarint(data, offset, "dag-pb link key")
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, offset = _uvarint(data, offset, "dag-pb link varint")
            continue
        if wire != 2:
            raise InvalidCID(f"dag-pb link: unexpected wire type {wire}")
        length, offset = _uvarint(data, offset, "dag-pb link length")
        stop = offset + length
        if stop > end:
            raise InvalidCID("dag-pb link: truncated field")
        if field == 1:
            found = cidFromBytes(data[offset:stop])
        offset = stop
    if found is None:
        raise InvalidCID("dag-pb link without a Hash")
    return found


def childrenOf(c, data):
    """
    The default child function for a DAG walk: dag-pb links, nothing for
    raw and every other codec.
    """
    if c.codec == "dag-pb":
        return dagPbLinks(data)
    return []
