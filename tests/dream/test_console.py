"""
The dream's web console in headless Chromium: a real dream's nodes and a
project pushed in the test appear (the page polls C{/api/state}); names
from users are shown as text, never run as HTML.
"""

import json
from pathlib import Path

import treq
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from tau.dream.console import NO_PATRICK, NO_PATRICK_NODE, consoleResource
from tau.services import available
from tests import e2e
from tests.browser import renderedDOM
from tests.cloud import until
from tests.dream.helpers import killDream, sandbox, state, tauOK


class FakeCollector:
    def __init__(self, state):
        self.state = state


HOSTILE = '<img id="xss" src="x" onerror="document.title=\'owned\'">'


class ConsolePageTests(TestCase):
    timeout = 120

    async def test_escaped(self):
        """
        A project, a resource, a job and a log whose text is HTML are shown
        as that text: no element of theirs is in the DOM.
        """
        fake = FakeCollector({
            "name": "esc", "fqdn": "esc.localtau", "dns": "127.0.0.1:53", "health": {"0-tns": "up"},
            "nodes": [{"name": "0-tns", "services": ["tns"], "pid": 1, "running": True, "peer": "12D3",
                       "urls": {"api": "http://127.0.0.1:1"}}],
            "projects": {"items": [{"id": "Qm1", "name": HOSTILE, "commit": "c1",
                                    "resources": [{"kind": "functions", "id": "Qm2", "name": HOSTILE,
                                                   "application": None}]}], "error": None},
            "jobs": {"items": [{"id": "j1", "status": "failed", "repository": HOSTILE,
                                "logs": [{"name": "l", "cid": "bafy", "text": HOSTILE}]}], "error": None},
        })
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Site(consoleResource(fake)))
        self.addCleanup(port.stopListening)
        dom = await renderedDOM(reactor, f"http://127.0.0.1:{port.getHost().port}/", workdir=self.mktemp())
        self.assertIn('data-node="0-tns"', dom)
        self.assertIn('data-project="Qm1"', dom)
        self.assertIn('data-job="j1"', dom)
        self.assertNotIn('<img id="xss"', dom)
        self.assertIn("<title>tau dream</title>", dom)
        self.assertGreaterEqual(dom.count("&lt;img id=\"xss\""), 4)


class DreamConsoleTests(TestCase):
    timeout = 300

    async def test_console(self):
        """
        The console a started dream prints shows its nodes with their
        services and health, and a project pushed to its tns with its
        resources; without patrick it says so.
        """
        env, _, _ = sandbox(self)
        folder = Path(self.mktemp()).resolve()
        where = ["--name", "console", "--root", str(folder)]
        self.addCleanup(killDream, folder)
        await tauOK(env, "dream", "start", *where, "--shapes", "seer+tns,auth")
        s = state(folder)
        tnsRoot = s["nodes"][0]["root"]
        await tauOK(env, "--root", tnsRoot, "--shape", "dream", "project", "push", str(e2e.PROJECT_FOLDER),
                    "--commit", "c0ffee")

        async def listed():
            response = await treq.get(s["console"] + "api/state", persistent=False)
            got = json.loads(await response.content())
            return [p["id"] for p in got["projects"]["items"]] == [e2e.PROJECT_ID]
        await until(listed, "the project in the console's state", limit=60)

        dom = await renderedDOM(reactor, s["console"], workdir=self.mktemp(), budget=3.0)
        self.assertIn('data-node="0-seer-tns"', dom)
        self.assertIn('data-node="1-auth"', dom)
        self.assertIn('<td class="services">seer, tns</td>', dom)
        self.assertIn('<td class="health-up">up</td>', dom)
        self.assertIn(f'data-project="{e2e.PROJECT_ID}"', dom)
        self.assertIn('<span class="project-name">e2e</span>', dom)
        self.assertIn(f"({e2e.FUNCTION_ID})", dom)
        self.assertIn(f"({e2e.WEBSITE_ID})", dom)
        said = NO_PATRICK if "patrick" not in available() else NO_PATRICK_NODE
        self.assertIn(f'<p class="error" id="jobs-error">{said}</p>', dom)
        await tauOK(env, "dream", "stop", *where)
