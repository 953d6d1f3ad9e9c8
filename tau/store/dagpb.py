"""
dag-pb (multicodec 0x70) canonical encoding and decoding.

Encoding is by hand because the canonical form writes every Link (field 2)
before Data (field 1), and each link's fields in the order Hash, Name, Tsize
(as @ipld/dag-pb and go-codec-dagpb do); protobuf serialisers write fields in
number order.  Decoding goes through ``tau/pb/dagpb.proto``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tau.pb import dagpb_pb2
from tau.protocols.varint import encode as uvarint

CODEC = 0x70
RAW = 0x55


@dataclass(frozen=True)
class Link:
    hash: bytes            # binary CID
    name: str | None = ""  # "" is encoded (as 12 00), None is left out
    tsize: int | None = None


def encodeLink(link: Link) -> bytes:
    body = bytearray()
    body += b"\x0a" + uvarint(len(link.hash)) + link.hash
    if link.name is not None:
        name = link.name.encode("utf-8")
        body += b"\x12" + uvarint(len(name)) + name
    if link.tsize is not None:
        body += b"\x18" + uvarint(link.tsize)
    return b"\x12" + uvarint(len(body)) + bytes(body)


def encodeNode(links: list[Link], data: bytes | None) -> bytes:
    """Canonical PBNode bytes; links must already be in their final order."""
    out = bytearray()
    for link in links:
        out += encodeLink(link)
    if data is not None:
        out += b"\x0a" + uvarint(len(data)) + data
    return bytes(out)


def decodeNode(block: bytes) -> tuple[list[Link], bytes | None]:
    n = dagpb_pb2.PBNode()
    n.ParseFromString(block)
    links = [
        Link(
            hash=bytes(l.Hash),
            name=l.Name if l.HasField("Name") else None,
            tsize=l.Tsize if l.HasField("Tsize") else None,
        )
        for l in n.Links
    ]
    return links, (bytes(n.Data) if n.HasField("Data") else None)
