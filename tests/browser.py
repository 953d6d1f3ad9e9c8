"""
Headless Chromium for tests: load a page the way a visitor's browser does
(scripts run) and read the DOM it ends with.

    dom = await renderedDOM(reactor, "http://app.example.com/",
                            hosts={"app.example.com": port}, workdir=self.mktemp())

A name in C{hosts} reaches C{127.0.0.1:PORT} (Chromium's
C{--host-resolver-rules}), so a project's domain is served by a listener
on a loopback port while the browser still sends C{Host: name}.  Chromium
runs through C{spawnProcess} (the reactor keeps running), with its own
profile folder, and is ended after C{timeout} seconds.
"""

import os
import shutil

from tests.processes import run

#: Chromium's binary (Debian's package); None when it is not installed
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: coreutils' timeout: bounds Chromium even when the test's own bound fails
TIMEOUT = shutil.which("timeout")


class BrowserError(Exception):
    """
    Chromium did not render the page (it failed, or ran out of time).
    """


def hostRules(hosts):
    """
    C{--host-resolver-rules} for C{hosts} (name -> loopback port, or
    C{(loopback address, port)}); every other name fails to resolve, so
    nothing leaves the machine.
    """
    rules = []
    for name, where in sorted(hosts.items()):
        address, port = where if isinstance(where, tuple) else ("127.0.0.1", where)
        rules.append(f"MAP {name} {address}:{port}")
    return ", ".join(rules + ["MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1"])


def chromiumArgs(url, hosts, profile, budget):
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        "--disable-extensions", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-proxy-server", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", f"--host-resolver-rules={hostRules(hosts)}",
        # scripts' timers and fetches get this much (virtual) time before the dump
        f"--virtual-time-budget={int(budget * 1000)}",
        "--dump-dom", url,
    ]


async def renderedDOM(reactor, url, *, hosts=None, workdir, timeout=60, budget=2.0):
    """
    The DOM of C{url} after its scripts ran, as HTML text.

    @param hosts: name -> loopback port or C{(address, port)} (see
        L{hostRules}).
    @param workdir: a folder for Chromium's profile (a test's C{mktemp()}).
    @param timeout: seconds before Chromium is ended.
    @param budget: virtual seconds the page's timers and requests get.
    @raise BrowserError: Chromium is missing, failed, or timed out.
    """
    if CHROMIUM is None:
        raise BrowserError("chromium is not installed (apt-get install chromium; .ci/run does)")
    profile = os.path.join(os.path.abspath(workdir), "chromium-profile")
    os.makedirs(profile, exist_ok=True)
    argv = [CHROMIUM] + chromiumArgs(url, hosts or {}, profile, budget)
    if TIMEOUT is not None:
        argv = [TIMEOUT, "--kill-after=5", str(int(timeout))] + argv
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": profile}
    try:
        status, out, err = await run(reactor, argv, env=env, timeout=timeout + 10)
    except Exception as e:
        raise BrowserError(f"chromium did not end within {timeout}s loading {url}: {e!r}") from None
    if status != 0 or "<html" not in out.lower():
        raise BrowserError(f"chromium exited {status} loading {url}:\n{err[-2000:]}")
    return out
