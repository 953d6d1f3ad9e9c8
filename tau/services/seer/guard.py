"""
What keeps seer's DNS server standing under hostile input, sans-IO:
L{readQuery} (which packets are parsed at all, which are answered with an
error without parsing, which are dropped), L{SourceLimit} (queries per
second per source address) and L{Limits} (the bounds of the server).

A packet is read only when its header says it is one ordinary query: the
QR bit clear, opcode QUERY, one question, no answer or authority records,
at most L{MAX_ADDITIONAL} additional ones (EDNS, TSIG), at most
C{maxQuery} bytes.  Taubyte's seer (miekg/dns) reads whatever arrives; a
64 KiB message of 250 questions pointing at one 1000-label name costs
twisted.names half a second of parsing, so those are refused on their
header.  Answers, and anything shorter than a header, are dropped; another
opcode is NOTIMP; the rest that is not such a query, or does not parse, is
FORMERR.
"""

import struct
from collections import OrderedDict
from dataclasses import dataclass

from twisted.names import dns

HEADER = struct.Struct("!HHHHHH")
#: the most additional records of a query (an EDNS OPT and a TSIG)
MAX_ADDITIONAL = 2
#: the longest name on the wire (RFC 1035 2.3.4), as twisted.names reads it (no final dot)
MAX_NAME = 253


@dataclass(frozen=True)
class Limits:
    """
    @ivar maxQuery: the largest query (bytes) read.
    @ivar rate: queries per second one source address gets answered
        (0: no limit); C{burst} more at once.
    @ivar maxSources: source addresses whose rate is followed (the oldest
        is forgotten past it).
    @ivar maxTCP: TCP connections at once; C{maxTCPPerSource} from one
        address.
    @ivar idle: seconds a TCP connection may go without a whole query.
    """

    maxQuery: int = 4096
    rate: float = 1000.0
    burst: float = 1000.0
    maxSources: int = 65536
    maxTCP: int = 256
    maxTCPPerSource: int = 16
    idle: float = 10.0


def errorReply(data, rCode):
    """
    The bytes of an answer with C{rCode} to the query whose header is
    C{data}'s first 12 bytes.
    """
    ident, flags = struct.unpack_from("!HH", data)
    return dns.Message(id=ident, answer=1, opCode=(flags >> 11) & 0xF, recDes=(flags >> 8) & 1,
                       rCode=rCode).toStr()


def formatError(data):
    """
    The FORMERR answer to a packet that did not parse: C{None} when its
    header is not whole or it is an answer itself (never answer those).
    """
    if len(data) < 12 or data[2] & 0x80:
        return None
    return errorReply(data, dns.EFORMAT)


def readQuery(data, maxQuery=Limits.maxQuery):
    """
    What to do with the bytes of one DNS message: C{(message, None)} to
    answer the L{dns.Message} it holds, C{(None, reply)} to send C{reply}
    (FORMERR or NOTIMP), C{(None, None)} to drop it.
    """
    if len(data) < 12:
        return None, None
    _, flags, questions, answers, authority, additional = HEADER.unpack_from(data)
    if flags & 0x8000:
        return None, None
    if (flags >> 11) & 0xF != dns.OP_QUERY:
        return None, errorReply(data, dns.ENOTIMP)
    if len(data) > maxQuery or questions != 1 or answers or authority or additional > MAX_ADDITIONAL:
        return None, errorReply(data, dns.EFORMAT)
    message = dns.Message()
    try:
        message.fromStr(data)
    except Exception:
        return None, errorReply(data, dns.EFORMAT)
    if len(message.queries) != 1 or len(message.queries[0].name.name) > MAX_NAME:
        return None, errorReply(data, dns.EFORMAT)
    return message, None


class SourceLimit:
    """
    A token bucket per source address: C{rate} a second, C{burst} at most.

    @param clock: IReactorTime.
    """

    def __init__(self, clock, rate, burst, maxSources):
        self.clock = clock
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.maxSources = maxSources
        self._sources = OrderedDict()
        #: queries refused so far
        self.refused = 0

    def allow(self, source):
        """
        Whether a query from C{source} (an address) is answered now.
        """
        if not self.rate:
            return True
        now = self.clock.seconds()
        entry = self._sources.pop(source, None)
        if entry is None:
            if len(self._sources) >= self.maxSources:
                self._sources.popitem(last=False)
            tokens = self.burst
        else:
            tokens = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
        allowed = tokens >= 1
        self._sources[source] = (tokens - 1 if allowed else tokens, now)
        if not allowed:
            self.refused += 1
        return allowed
