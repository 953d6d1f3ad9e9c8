"""
A small internet in network namespaces, with home routers: for the hole
punching tests (tests/test_holepunch.py) and bench/_reach_holepunch.py.

    site a:  host a (10.1.0.2) -- lan [router na] wan (11.0.1.2) --+
                                                                 R (11.0.1.1, 11.0.2.1, ...)
    site b:  host b (10.2.0.2) -- lan [router nb] wan (11.0.2.2) --+
    public:  host pa (11.0.3.2) ------------------------------------+

R is the relay's namespace and also the internet's router: it forwards
between its legs.  Each router masquerades its LAN behind its WAN address
and, like a Linux home router, drops what comes in unasked (nftables:
input and forward policy drop, established and related accepted).  A
symmetric router masquerades with C{fully-random}: every connection gets a
random public port, so the port the relay saw is not the one a hole punch
leaves from.  A public host sits on R directly, with no NAT.

The addresses are assigned here and reachable only inside these
namespaces (no route leaves them); 11.0.0.0/16 is used because both tau and
js-libp2p take the documentation ranges (192.0.2.0/24 ...) for private
ones, and hole punching only dials public addresses.

R counts the bytes of its own sockets (nftables C{input} and C{output}
hooks) apart from what it forwards (C{forward}): once two peers talk
directly, the first stop growing while the second grows.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from tests.processes import run

PREFIX = "tauns-"  # tests/test_netns.py removes stale namespaces of this prefix


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NATNet:
    """
    @param reactor: for running C{ip} and C{nft}.
    @param sites: C{{name: kind}}, kind C{"cone"} (a home router),
        C{"symmetric"} or C{"public"} (no router); the n-th site gets
        11.0.n.0/24 on R's side and, behind a router, 10.n.0.0/24.
    """

    ACCOUNTING = """
table inet tauacct {
  chain own_in { type filter hook input priority 0; counter; }
  chain own_out { type filter hook output priority 0; counter; }
  chain routed { type filter hook forward priority 0; counter; }
}
"""

    def __init__(self, reactor, sites, tag=None):
        self.reactor = reactor
        self.sites = dict(sites)
        self.tag = tag or f"{PREFIX}{os.getpid()}-{os.urandom(3).hex()}"
        self.ns = {"r": f"{self.tag}-r"}
        for name, kind in self.sites.items():
            self.ns[name] = f"{self.tag}-{name}"
            if kind != "public":
                self.ns[f"n{name}"] = f"{self.tag}-n{name}"
        self.index = {name: i + 1 for i, name in enumerate(self.sites)}

    # addresses

    def relayIP(self, site):
        """R's address on C{site}'s leg."""
        return f"11.0.{self.index[site]}.1"

    def publicIP(self, site):
        """The site's public address: its router's WAN, or the host."""
        return f"11.0.{self.index[site]}.2"

    def hostIP(self, site):
        kind = self.sites[site]
        return self.publicIP(site) if kind == "public" else f"10.{self.index[site]}.0.2"

    # commands

    async def cmd(self, *argv, check=True, timeout=30):
        status, out, err = await run(self.reactor, list(argv), timeout=timeout)
        if check and status != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({status}): {err.strip()}")
        return status, out, err

    async def ip(self, *args, check=True):
        return await self.cmd("ip", *args, check=check)

    async def inside(self, name, *argv, check=True):
        return await self.cmd("ip", "netns", "exec", self.ns[name], *argv, check=check)

    async def nft(self, name, ruleset):
        fd, path = tempfile.mkstemp(prefix="tau-nft-", suffix=".nft")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(ruleset)
            await self.inside(name, "nft", "-f", path)
        finally:
            os.unlink(path)

    async def sysctl(self, name, key, value):
        path = "/proc/sys/" + key.replace(".", "/")
        await self.inside(name, "sh", "-c", f"echo {value} > {path}")

    # building and removing

    @classmethod
    async def removeStale(cls, reactor):
        """
        Delete the namespaces of earlier runs whose test process is gone.
        """
        status, out, _ = await run(reactor, ["ip", "netns", "list"], timeout=30)
        for line in out.splitlines():
            if not line.strip():
                continue
            name = line.split()[0]
            match = re.match(rf"^{PREFIX}(\d+)-", name)
            if match and not _alive(int(match.group(1))):
                await run(reactor, ["ip", "netns", "del", name], timeout=30)

    async def build(self):
        """
        Create the namespaces, links, addresses, routes and rules.
        """
        for name in self.ns.values():
            await self.ip("netns", "add", name)
        r = self.ns["r"]
        await self.ip("-n", r, "link", "set", "lo", "up")
        await self.sysctl("r", "net.ipv4.ip_forward", 1)
        await self.nft("r", self.ACCOUNTING)
        for site, kind in self.sites.items():
            n = self.index[site]
            host = self.ns[site]
            leg = f"s-{site}"[:15]
            if kind == "public":
                await self.ip("-n", r, "link", "add", leg, "type", "veth", "peer", "name", "eth0", "netns", host)
                await self.ip("-n", r, "addr", "add", f"11.0.{n}.1/24", "dev", leg)
                await self.ip("-n", host, "addr", "add", f"11.0.{n}.2/24", "dev", "eth0")
                for ns, link in ((r, leg), (host, "eth0"), (host, "lo")):
                    await self.ip("-n", ns, "link", "set", link, "up")
                await self.ip("-n", host, "route", "add", "default", "via", f"11.0.{n}.1")
                continue
            router = self.ns[f"n{site}"]
            await self.ip("-n", r, "link", "add", leg, "type", "veth", "peer", "name", "wan", "netns", router)
            await self.ip("-n", router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", host)
            await self.ip("-n", r, "addr", "add", f"11.0.{n}.1/24", "dev", leg)
            await self.ip("-n", router, "addr", "add", f"11.0.{n}.2/24", "dev", "wan")
            await self.ip("-n", router, "addr", "add", f"10.{n}.0.1/24", "dev", "lan")
            await self.ip("-n", host, "addr", "add", f"10.{n}.0.2/24", "dev", "eth0")
            for ns, link in ((r, leg), (router, "wan"), (router, "lan"), (router, "lo"), (host, "eth0"), (host, "lo")):
                await self.ip("-n", ns, "link", "set", link, "up")
            await self.ip("-n", host, "route", "add", "default", "via", f"10.{n}.0.1")
            await self.ip("-n", router, "route", "add", "default", "via", f"11.0.{n}.1")
            await self.sysctl(f"n{site}", "net.ipv4.ip_forward", 1)
            mapping = " fully-random" if kind == "symmetric" else ""
            await self.nft(
                f"n{site}",
                f"""
table ip nat {{
  chain post {{ type nat hook postrouting priority srcnat; oifname "wan" masquerade{mapping}; }}
}}
table inet filter {{
  chain input {{
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname {{ "lo", "lan" }} accept
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }}
}}
""",
            )

    async def namespaces(self):
        _, out, _ = await self.ip("netns", "list")
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    async def delete(self):
        """
        Delete every namespace of this net (the processes in them should
        be gone first); the links go with them.
        """
        present = await self.namespaces()
        for name in self.ns.values():
            if name in present:
                await self.ip("netns", "del", name, check=False)
        return [n for n in await self.namespaces() if n.startswith(self.tag)]

    # accounting

    async def counters(self):
        """
        R's byte counters: C{{"input": n, "output": n, "forward": n}}.
        """
        _, out, _ = await self.inside("r", "nft", "-j", "list", "table", "inet", "tauacct")
        found = {}
        for item in json.loads(out)["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            for expr in rule["expr"]:
                if "counter" in expr:
                    found[rule["chain"]] = expr["counter"]["bytes"]
        return {"input": found.get("own_in", 0), "output": found.get("own_out", 0), "forward": found.get("routed", 0)}
