"""
Taubyte's command messages (go's C{p2p/streams/command}), sans-IO.

One stream carries one exchange: the client sends one data frame on
channel 0 holding a CBOR command C{{16: name, 64: body}} (body a map with
text keys, or null; other keys ignored), the server answers one data frame
holding a map with text keys, CBOR null (an empty success), or
C{{"error": text}}.

Encoding follows go's fxamacker/cbor defaults, not canonical CBOR: map
keys in insertion order, shortest integers, floats as float64.  Decoding
applies go's limits (depth 32, 131,072 items per array or map, valid
UTF-8) and admits only the types a go peer can produce into C{any}: null,
booleans, 64-bit integers, floats, text, bytes, arrays and maps with
scalar keys.  Anything else (tags such as dates, big numbers past 64 bits,
undefined) is refused.
"""

import io

import cbor2

from tau.services.frames import DATA, HEADER_SIZE, encodeFrame

NAME_KEY = 16
BODY_KEY = 64

MAX_DEPTH = 32
MAX_ITEMS = 131072
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


class CommandError(ValueError):
    """
    A command or response that is not valid; the message says why.
    """


class RemoteError(Exception):
    """
    The service answered C{{"error": text}}.
    """


def _check(value, depth=0):
    """
    Refuse what go's decoder into C{any} would not produce, and what passes
    its limits.
    """
    if depth > MAX_DEPTH:
        raise CommandError(f"nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, (bool, float, str, bytes)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise CommandError("integer out of the 64-bit range")
        return
    if isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise CommandError(f"array of {len(value)} items, limit {MAX_ITEMS}")
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise CommandError(f"map of {len(value)} items, limit {MAX_ITEMS}")
        for key, item in value.items():
            if not isinstance(key, (str, int, bytes, bool)):
                raise CommandError(f"map key of type {type(key).__name__}")
            _check(key, depth + 1)
            _check(item, depth + 1)
        return
    raise CommandError(f"CBOR value of type {type(value).__name__} is not accepted")


def _tag(*args):
    # cbor2 5 calls tag_hook(decoder, tag), cbor2 6 tag_hook(tag, immutable)
    tag = next(a for a in args if isinstance(a, cbor2.CBORTag))
    raise CommandError(f"CBOR tag {tag.tag} is not accepted")


def decodeCBOR(payload):
    """
    One CBOR item, checked as L{_check} says.

    @raise CommandError: when it is not one valid, accepted item.
    """
    fp = io.BytesIO(payload)
    decoder = cbor2.CBORDecoder(fp, tag_hook=_tag, max_depth=MAX_DEPTH + 1, allow_duplicate_keys=False)
    try:
        value = decoder.decode()
    except CommandError:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as e:
        raise CommandError(f"not CBOR: {e}") from None
    if fp.tell() != len(payload):
        # a frame holds one item
        raise CommandError(f"{len(payload) - fp.tell()} bytes after the CBOR item")
    _check(value)
    return value


def _textKeys(value, what):
    if not isinstance(value, dict):
        raise CommandError(f"{what} is a {type(value).__name__}, expected a map")
    for key in value:
        if not isinstance(key, str):
            raise CommandError(f"{what} has a key {key!r} that is not text")
    return value


def payloadOf(frame):
    """
    The payload of one whole data frame made by this module.
    """
    return frame[HEADER_SIZE:]


def encodeCommand(name, body=None):
    """
    The frame of command C{name} with C{body} (a map with text keys, or
    None).
    """
    if body is not None:
        _textKeys(body, "the body")
    return encodeFrame(cbor2.dumps({NAME_KEY: name, BODY_KEY: body}), DATA)


def decodeCommand(payload):
    """
    C{(name, body)} of a command frame's payload; C{body} is a dict (empty
    for null).

    @raise CommandError: when it is not a command.
    """
    value = decodeCBOR(payload)
    if not isinstance(value, dict):
        raise CommandError(f"the command is a {type(value).__name__}, expected a map")
    name = value.get(NAME_KEY)
    if not isinstance(name, str) or not name:
        raise CommandError("the command has no name (key 16)")
    body = value.get(BODY_KEY)
    if body is None:
        return name, {}
    return name, dict(_textKeys(body, "the body"))


def encodeResponse(value):
    """
    The frame of an answer: a map with text keys, or None.
    """
    if value is not None:
        _textKeys(value, "the answer")
    return encodeFrame(cbor2.dumps(value), DATA)


def encodeErrorResponse(text):
    return encodeFrame(cbor2.dumps({"error": str(text)}), DATA)


def decodeResponse(payload):
    """
    The answer of a response frame's payload: a dict, or None.

    @raise RemoteError: when the service answered an error.
    @raise CommandError: when it is not an answer.
    """
    value = decodeCBOR(payload)
    if value is None:
        return None
    value = _textKeys(value, "the answer")
    if "error" in value:
        raise RemoteError(str(value["error"]))
    return value
