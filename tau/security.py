"""
The security protocols a host offers, by their config names.

A host negotiates one of them with multistream-select on every raw
connection: as the dialer it proposes them in the configured order, as the
listener it accepts any of them.  Each is an object with C{protocolID} and
C{secure(transport, *, isClient, protocol, expectedPeer, initialBytes,
timeout) -> (layer, Deferred[PeerID])} (L{tau.protocols.tls.TLSSecurity},
L{tau.protocols.noise.NoiseSecurity}).
"""

#: The config names (L{makeSecurities} imports their modules only when
#: used, so the config can check names without loading OpenSSL).
KINDS = ("tls", "noise")
#: TLS first (what every peer of ours spoke so far), Noise offered too.
DEFAULT = ("tls", "noise")


def makeSecurities(names, hostKey, clock):
    """
    The security protocols C{names} (config names, in preference order) for
    a host, by protocol id, in that order.

    @raise ValueError: for an empty list, an unknown name or a repeated one.
    """
    names = tuple(names)
    if not names:
        raise ValueError("at least one security protocol is needed (tls, noise)")
    for name in names:
        if name not in KINDS:
            raise ValueError(f"unknown security protocol {name!r} (known: {', '.join(KINDS)})")
    if len(set(names)) != len(names):
        raise ValueError(f"security protocol listed twice in {list(names)}")
    from tau.protocols.noise import NoiseSecurity
    from tau.protocols.tls import TLSSecurity

    classes = {"tls": TLSSecurity, "noise": NoiseSecurity}
    securities = {}
    for name in names:
        security = classes[name](hostKey, clock)
        securities[security.protocolID] = security
    return securities
