"""
dig and curl, as real processes (through C{spawnProcess}, bounded in
time), for tests that check what another implementation reads from our
DNS and HTTP servers.

    addresses = await digAddresses(reactor, port, "app.example.com")
    status, headers, body = await curl(reactor, "http://app.example.com/hello",
                                       via={"app.example.com": gatewayPort})

C{via} sends a name's connections to a loopback port (curl's
C{--connect-to}) while the URL, the C{Host} header and TLS's SNI keep the
name without a port, as a visitor on port 80 or 443 sends them.
"""

import os
import shutil
import signal

from tests.processes import run, spawn

DIG = shutil.which("dig")
CURL = shutil.which("curl")


class ToolError(AssertionError):
    """
    dig or curl failed (not an answer we dislike: the tool itself failed).
    """


def _env():
    # no proxies, no user configuration
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}


async def dig(reactor, port, *args, tcp=False, timeout=30):
    """
    C{dig @127.0.0.1 -p PORT ARGS}'s output (text).

    @raise ToolError: dig is missing or exited with an error.
    """
    if DIG is None:
        raise ToolError("dig is not installed (apt-get install dnsutils; .ci/run does)")
    argv = [DIG, "+time=5", "+tries=1", "@127.0.0.1", "-p", str(port), "+tcp" if tcp else "+notcp", *args]
    status, out, err = await run(reactor, argv, env=_env(), timeout=timeout)
    if status != 0:
        raise ToolError(f"dig {' '.join(args)} exited {status}: {out}{err}")
    return out


async def digAddresses(reactor, port, name, rtype="A", tcp=False):
    """
    The sorted answers dig reads for C{name} (C{+short}: one per line).
    """
    out = await dig(reactor, port, "+short", name, rtype, tcp=tcp)
    return sorted(line.strip() for line in out.splitlines() if line.strip())


async def digStatus(reactor, port, name, rtype="A", tcp=False):
    """
    The status dig reads (C{NOERROR}, C{NXDOMAIN}, C{REFUSED}...).
    """
    out = await dig(reactor, port, name, rtype, tcp=tcp)
    for line in out.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    raise ToolError(f"dig printed no status:\n{out}")


def parseResponse(out):
    """
    C{(status, headers, body)} of curl's C{-i} output (the last response
    when several came: an informational one, or redirects followed);
    headers a dict of lower-case names (the last value of a repeated one).
    """
    while True:
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if not ((100 <= status < 200 or 300 <= status < 400) and body.startswith(b"HTTP/")):
            break
        out = body
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


async def curl(reactor, url, *args, via=None, timeout=30):
    """
    C{(status, headers, body)} of curl's answer for C{url}.

    @param via: name -> loopback port (or C{(address, port)}, the address
        a loopback one): that name's connections go to C{127.0.0.1:PORT}
        (C{--connect-to}); the URL keeps the name.
    @param args: more curl options (C{-X POST}, C{-H ...}, C{-k}...).
    @raise ToolError: curl is missing or could not get an answer.
    """
    if CURL is None:
        raise ToolError("curl is not installed (apt-get install curl; .ci/run does)")
    connect = []
    for name, where in sorted((via or {}).items()):
        address, port = where if isinstance(where, tuple) else ("127.0.0.1", where)
        connect += ["--connect-to", f"{name}::{address}:{port}"]
    argv = [CURL, "-s", "-S", "-i", "--path-as-is", "--noproxy", "*", "--max-time", str(timeout),
            *connect, *args, url]
    status, out, err = await _runBytes(reactor, argv, timeout + 10)
    if status != 0:
        raise ToolError(f"curl {url} exited {status}: {err!r}")
    return parseResponse(out)


async def _runBytes(reactor, argv, timeout):
    # tests.processes.run decodes stdout; a body may be binary
    proto = spawn(reactor, argv, env=_env())
    try:
        await proto.ended(timeout)
    except Exception:
        proto.kill(signal.SIGKILL)
        raise
    return proto.status, proto.out, proto.err.decode("utf-8", "replace")
