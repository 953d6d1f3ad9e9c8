"""
Call a running node's control API, as the CLI does.
"""

import json
from urllib.parse import urlencode

import multiaddr
import treq
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, UNIXClientEndpoint
from twisted.web.client import Agent, FileBodyProducer

from tau.control.auth import readToken


class ControlError(Exception):
    """
    The node is not reachable, or refused the command: the message says why.
    """


def readAPIAddress(config):
    """
    The control API multiaddr that the running node of C{config} wrote.

    @raise ControlError: when no node of that root and shape is running.
    """
    try:
        text = config.apiFile.read_text(encoding="ascii").strip()
    except OSError:
        raise ControlError(
            f"no running node for shape {config.shape!r} at {config.root} (start one with: twistd -n taubyte --shape={config.shape} --root {config.root})"
        ) from None
    try:
        return multiaddr.Multiaddr(text)
    except Exception:
        raise ControlError(f"{config.apiFile} does not hold an API address: {text!r}") from None


def _endpointFor(reactor, addr):
    names = [p.name for p in addr.protocols()]
    if names == ["ip4", "tcp"]:
        return TCP4ClientEndpoint(reactor, addr.value_for_protocol("ip4"), int(addr.value_for_protocol("tcp")), timeout=10)
    if names == ["ip6", "tcp"]:
        return TCP6ClientEndpoint(reactor, addr.value_for_protocol("ip6"), int(addr.value_for_protocol("tcp")), timeout=10)
    if names == ["unix"]:
        return UNIXClientEndpoint(reactor, addr.value_for_protocol("unix"), timeout=10)
    raise ControlError(f"unsupported API address {addr}")


class _Endpoints:
    def __init__(self, reactor, addr):
        self._endpoint = _endpointFor(reactor, addr)

    def endpointForURI(self, uri):
        return self._endpoint


def _url(command, args):
    pairs = list(args.items()) if isinstance(args, dict) else list(args)
    query = urlencode(pairs, doseq=True)
    return f"http://localhost/api/v0/{command}" + (f"?{query}" if query else "")


def _headers(config):
    """
    The node's token (C{api-token}), when it keeps one, as a bearer
    C{Authorization} header.
    """
    try:
        token = readToken(config.apiTokenFile)
    except OSError as e:
        raise ControlError(f"cannot read the control API token {config.apiTokenFile}: {e.strerror}") from None
    return {b"Authorization": [b"Bearer " + token]} if token else {}


async def _post(reactor, config, command, args, body, timeout):
    addr = readAPIAddress(config)
    headers = _headers(config)
    agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor, addr))
    if hasattr(body, "read"):
        body = FileBodyProducer(body)
    try:
        return await treq.post(_url(command, args), data=body, headers=headers, agent=agent, timeout=timeout, persistent=False)
    except ControlError:
        raise
    except Exception as e:
        raise ControlError(f"cannot reach the node at {addr}: {e}") from None


async def _error(response):
    body = await response.content()
    try:
        data = json.loads(body)
    except ValueError:
        return ControlError(f"the node answered {response.code} with a body that is not JSON")
    message = data.get("Message") if isinstance(data, dict) else None
    return ControlError(message or f"the node answered {response.code}")


async def call(reactor, config, command, args=(), timeout=60, body=None):
    """
    POST C{command} with C{args} (a dict, or pairs; positional values under
    C{"arg"}) and an optional C{body} (bytes or a binary file) to the node
    of C{config}, and return the decoded JSON answer.

    @raise ControlError: when the node is down or answers with an error.
    """
    response = await _post(reactor, config, command, args, body, timeout)
    if response.code != 200:
        raise await _error(response)
    try:
        return json.loads(await response.content())
    except ValueError:
        raise ControlError(f"the node answered {response.code} with a body that is not JSON") from None


async def stream(reactor, config, command, args, write, timeout=None):
    """
    POST C{command} and hand each chunk of the (non-JSON) answer to
    C{write}, as it arrives.

    @raise ControlError: when the node is down, refuses, or the answer is
        cut short.
    """
    response = await _post(reactor, config, command, args, None, timeout)
    if response.code != 200:
        raise await _error(response)
    try:
        await treq.collect(response, write)
    except Exception as e:
        raise ControlError(f"{command}: the answer was cut short ({e.__class__.__name__})") from None
