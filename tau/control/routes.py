"""
The commands of the control API.

Each command is an C{async def handler(node, args)} registered with
L{command}; C{args} maps each query argument to its list of values (kubo
passes positional arguments as repeated C{arg}).  A handler returns a value
that encodes as JSON, or raises L{APIError} for a caller's mistake.
"""

import base64

from tau._version import __version__

COMMANDS = {}
# Commands that read the request body: they are called with it (a file).
TAKES_BODY = set()


class APIError(Exception):
    """
    A request the node refuses: the message goes back to the caller as is.
    """

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message = message
        self.status = status


def command(name, body=False):
    """
    Register the decorated coroutine function as command C{name}; with
    C{body}, it is called as C{handler(node, args, body)}, C{body} the
    request body as a binary file.
    """

    def register(handler):
        COMMANDS[name] = handler
        if body:
            TAKES_BODY.add(name)
        return handler

    return register


class BodyStream:
    """
    A command's answer that is not JSON but bytes, streamed as they come
    from C{chunks} (an async iterator), with flow control.
    """

    def __init__(self, chunks, contentType=b"application/octet-stream"):
        self.chunks = chunks
        self.contentType = contentType


def argument(args, name="arg", required=True):
    """
    The single value of argument C{name}.

    @raise APIError: when it is missing (and required) or repeated.
    """
    values = args.get(name, [])
    if len(values) > 1:
        raise APIError(f"argument {name!r} given {len(values)} times, expected once")
    if not values:
        if required:
            raise APIError(f"argument {name!r} is required")
        return None
    return values[0]


@command("id")
async def identity(node, args):
    """
    Who the node is: kubo's C{id} fields.
    """
    config = node.config
    return {
        "ID": str(config.peerID),
        "PublicKey": base64.b64encode(config.privateKey.publicKey().toProtobuf()).decode("ascii"),
        "Addresses": node.announcedAddresses(),
        "AgentVersion": f"tau/{__version__}",
        "Protocols": node.protocols(),
        "Shape": config.shape,
        "Services": list(config.services),
        "Reachability": node.autonat.status if getattr(node, "autonat", None) is not None else "unknown",
    }
