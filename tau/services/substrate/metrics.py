"""
What a substrate answers C{proxy-http} with, so a gateway can choose among
several (Taubyte's C{services/substrate/components/metrics}): little-endian
bytes, a version byte (1), then

  - for a website: C{f32 cached} (1 when its folder is held here, else 0);
  - for a function: C{f32 cached} (1 when its module is compiled here),
    C{i64 coldStart} (ns), C{f64 memory} (bytes), C{i64 avgRunTime} (ns).

The answer is C{{"websites": bytes}} or C{{"functions": bytes}}.
"""

import struct
from dataclasses import dataclass

VERSION = 1
_WEBSITE = struct.Struct("<Bf")
_FUNCTION = struct.Struct("<Bfqdq")


class MetricsError(ValueError):
    """
    Metrics bytes that do not decode.
    """


@dataclass(frozen=True)
class WebsiteMetrics:
    cached: float = 0.0

    kind = "websites"

    def encode(self):
        return _WEBSITE.pack(VERSION, self.cached)


@dataclass(frozen=True)
class FunctionMetrics:
    cached: float = 0.0
    coldStart: int = 0
    memory: float = 0.0
    avgRunTime: int = 0

    kind = "functions"

    def encode(self):
        return _FUNCTION.pack(VERSION, self.cached, self.coldStart, self.memory, self.avgRunTime)


def encodeAnswer(metrics):
    """
    The C{proxy-http} answer body for C{metrics}.
    """
    return {metrics.kind: metrics.encode()}


def decodeAnswer(body):
    """
    The L{WebsiteMetrics} or L{FunctionMetrics} of a C{proxy-http} answer.

    @raise MetricsError: not one of the two, or bytes of the wrong size or
        version.
    """
    if not isinstance(body, dict) or len(body) != 1:
        raise MetricsError(f"expected {{websites: bytes}} or {{functions: bytes}}, found {body!r:.80}")
    (kind, data), = body.items()
    shapes = {"websites": (_WEBSITE, WebsiteMetrics), "functions": (_FUNCTION, FunctionMetrics)}
    if kind not in shapes or not isinstance(data, bytes):
        raise MetricsError(f"expected {{websites: bytes}} or {{functions: bytes}}, found key {kind!r:.40}")
    shape, cls = shapes[kind]
    if len(data) != shape.size:
        raise MetricsError(f"{kind} metrics of {len(data)} bytes, expected {shape.size}")
    version, *values = shape.unpack(data)
    if version != VERSION:
        raise MetricsError(f"metrics version {version}, expected {VERSION}")
    return cls(*values)
