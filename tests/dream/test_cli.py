"""
C{tau dream start|status|inject|stop} as a user runs them: real processes
(a supervisor in the background, a C{twistd} per node), seer answering the
dream's names to C{dig}, and two dreams started and stopped side by side
20 times without meeting, leaving nothing outside their folders.
"""

import os
from pathlib import Path

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.trial.unittest import TestCase

from tests.cloud import until
from tests.dream.helpers import alive, killAll, killDream, pidsOf, sandbox, state, tau, tauOK
from tests.netclients import digAddresses, digStatus


class LifecycleTests(TestCase):
    timeout = 300

    async def test_lifecycle(self):
        """
        start prints where things are; status lists the nodes, their
        services and health; seer answers C{<service>.tau.<name>.localtau};
        a second start of the same dream is refused; inject adds a node;
        stop ends every process and removes the folder.
        """
        env, home, tmp = sandbox(self)
        folder = Path(self.mktemp()).resolve()
        where = ["--name", "life", "--root", str(folder)]
        out = await tauOK(env, "dream", "start", *where, "--shapes", "seer+tns,auth")
        pids = pidsOf(folder)
        self.addCleanup(killAll, pids)
        s = state(folder)
        self.assertEqual(s["fqdn"], "life.localtau")
        self.assertIn(f"console  {s['console']}", out)
        self.assertIn(f"dig @127.0.0.1 -p {s['dns'].split(':')[1]} gateway.tau.life.localtau", out)
        self.assertTrue(all(alive(pid) for pid in pids))

        out = await tauOK(env, "dream", "status", *where)
        self.assertRegex(out, r"0-seer-tns +pid \d+ +up +seer, tns")
        self.assertRegex(out, r"1-auth +pid \d+ +up +auth")
        self.assertIn(s["urls"]["auth"], out)

        port = int(s["dns"].split(":")[1])

        async def answered():
            return await digAddresses(reactor, port, "auth.tau.life.localtau") == ["127.0.0.1"]
        await until(answered, "seer answering for auth.tau.life.localtau", limit=60)
        self.assertEqual(await digStatus(reactor, port, "nobody.life.localtau"), "NXDOMAIN")

        status, _, err = await tau(env, "dream", "start", *where, "--shapes", "tns")
        self.assertEqual(status, 1)
        self.assertIn("already runs", err)

        # the supervisor's control API wants its token; refuses a bad shape
        response = await treq.get(s["control"] + "/status", persistent=False)
        self.assertEqual(response.code, 401)
        await response.content()
        token = (folder / "control.token").read_text().strip()
        self.assertEqual(oct((folder / "control.token").stat().st_mode & 0o777), "0o600")
        response = await treq.post(s["control"] + "/inject?shape=gateway%2Bsubstrate",
                                   headers={"Authorization": f"Bearer {token}"}, persistent=False)
        self.assertEqual(response.code, 400)
        self.assertIn("never share a node", (await response.json())["error"])

        out = await tauOK(env, "dream", "inject", "service", "tns,substrate", *where)
        self.assertIn("node 2-tns started", out)
        self.assertIn("node 3-substrate started", out)
        pids = pidsOf(folder)
        self.addCleanup(killAll, pids)
        self.assertEqual(len(pids), 5)
        out = await tauOK(env, "dream", "status", *where)
        self.assertRegex(out, r"2-tns +pid \d+ +up +tns")
        self.assertRegex(out, r"3-substrate +pid \d+ +up +substrate")

        out = await tauOK(env, "dream", "stop", *where)
        self.assertIn("stopped", out)
        self.assertEqual([pid for pid in pids if alive(pid)], [])
        self.assertFalse(folder.exists())
        self.assertEqual((list(home.iterdir()), list(tmp.iterdir())), ([], []))

        status, _, err = await tau(env, "dream", "status", *where)
        self.assertEqual(status, 1)
        self.assertIn("no dream life runs", err)

    async def test_keep(self):
        """
        stop --keep keeps the folder (without pid, state or socket), and the
        dream starts again from it with the same node identity.
        """
        env, _, _ = sandbox(self)
        folder = Path(self.mktemp()).resolve()
        where = ["--name", "kept", "--root", str(folder)]
        await tauOK(env, "dream", "start", *where, "--shapes", "tns")
        self.addCleanup(killAll, pidsOf(folder))
        peer = state(folder)["nodes"][0]["peer"]
        await tauOK(env, "dream", "stop", "--keep", *where)
        self.assertTrue((folder / "nodes").is_dir())
        self.assertEqual([p.name for p in folder.iterdir() if p.name.startswith(("dream.pid", "dream.json",
                                                                                  "control.token"))], [])
        await tauOK(env, "dream", "start", *where, "--shapes", "tns")
        self.addCleanup(killAll, pidsOf(folder))
        self.assertEqual(state(folder)["nodes"][0]["peer"], peer)
        await tauOK(env, "dream", "stop", *where)
        self.assertFalse(folder.exists())

    async def test_supervisorKilled(self):
        """
        When the supervisor was killed (SIGKILL: no chance to clean up),
        stop still ends the nodes it left and removes the folder.
        """
        env, _, _ = sandbox(self)
        folder = Path(self.mktemp()).resolve()
        where = ["--name", "orphan", "--root", str(folder)]
        self.addCleanup(killDream, folder)
        await tauOK(env, "dream", "start", *where, "--shapes", "tns")
        supervisor, node = pidsOf(folder)
        killAll([supervisor])
        await until(lambda: succeed(not alive(supervisor)), "the supervisor's end", limit=30)
        self.assertTrue(alive(node))
        status, _, err = await tau(env, "dream", "status", *where)
        self.assertEqual((status, "no dream orphan runs" in err), (1, True))
        await tauOK(env, "dream", "stop", *where)
        await until(lambda: succeed(not alive(node)), "the node's end", limit=30)
        self.assertFalse(folder.exists())

    async def test_defaultFolder(self):
        """
        Without --root a dream lives in ~/.cache/tau/dream/NAME; stop leaves
        nothing in the home folder (~/.cache, there before, stays empty).
        """
        env, home, tmp = sandbox(self)
        (home / ".cache").mkdir()
        folder = home / ".cache" / "tau" / "dream" / "home"
        self.addCleanup(killDream, folder)
        out = await tauOK(env, "dream", "start", "--name", "home", "--shapes", "tns")
        self.assertIn(f"folder   {folder}", out)
        self.assertEqual(state(folder)["nodes"][0]["root"], str(folder / "nodes" / "0-tns"))
        await tauOK(env, "dream", "stop", "--name", "home")
        self.assertEqual((list(home.iterdir()), list(tmp.iterdir())), ([home / ".cache"], []))
        self.assertEqual(list((home / ".cache").iterdir()), [])

    async def test_badShapes(self):
        """
        An unknown service, or gateway and substrate on one node, is refused
        before anything starts.
        """
        env, _, _ = sandbox(self)
        folder = Path(self.mktemp()).resolve()
        status, _, err = await tau(env, "dream", "start", "--root", str(folder), "--shapes", "tns,nosuch")
        self.assertEqual((status, "'nosuch' is not provided by this build" in err), (1, True))
        status, _, err = await tau(env, "dream", "start", "--root", str(folder), "--shapes", "gateway+substrate")
        self.assertEqual((status, "never share a node" in err), (1, True))
        status, _, err = await tau(env, "dream", "start", "--root", str(folder), "--shapes", "tns,seer", "--nodes", "1")
        self.assertEqual((status, "need at least 2 nodes" in err), (1, True))
        self.assertFalse(folder.exists())


#: How many times the two dreams start and stop (the issue's figure;
#: TAU_DREAM_CYCLES sets another).
CYCLES = int(os.environ.get("TAU_DREAM_CYCLES", "20"))


class TwoDreamsTests(TestCase):
    timeout = 900

    async def test_cycles(self):
        """
        Two dreams (one seer node each) started and stopped together
        L{CYCLES} times: each start succeeds, each seer answers for its own
        network and refuses the other's, their ports differ; afterwards no
        process of theirs runs and nothing was written to C{HOME} or
        C{TMPDIR}.
        """
        env, home, tmp = sandbox(self)
        base = Path(self.mktemp()).resolve()
        names = ("cycle-a", "cycle-b")
        every = []
        folders = [base / name for name in names]
        for folder in folders:
            self.addCleanup(killDream, folder)
        for cycle in range(CYCLES):
            await gatherResults([Deferred.fromCoroutine(tauOK(env, "dream", "start", "--name", name, "--root",
                                                              str(folder), "--shapes", "seer"))
                                 for name, folder in zip(names, folders)])
            for folder in folders:
                pids = pidsOf(folder)
                every.extend(pids)
                self.addCleanup(killAll, pids)
            states = [state(folder) for folder in folders]
            ports = [int(s["dns"].split(":")[1]) for s in states]
            self.assertNotEqual(ports[0], ports[1])
            for own, other, port in ((names[0], names[1], ports[0]), (names[1], names[0], ports[1])):
                async def answered(port=port, own=own):
                    return await digAddresses(reactor, port, f"seer.tau.{own}.localtau") == ["127.0.0.1"]
                await until(answered, f"cycle {cycle}: {own}'s seer answering", limit=30)
                self.assertEqual(await digStatus(reactor, port, f"seer.tau.{other}.localtau"), "REFUSED")
            await gatherResults([Deferred.fromCoroutine(tauOK(env, "dream", "stop", "--name", name, "--root",
                                                              str(folder)))
                                 for name, folder in zip(names, folders)])
            self.assertEqual([folder for folder in folders if folder.exists()], [])
        self.assertEqual([pid for pid in every if alive(pid)], [])
        self.assertEqual(list(base.iterdir()), [])
        self.assertEqual((list(home.iterdir()), list(tmp.iterdir())), ([], []))


class ReadyPipeTests(TestCase):
    """
    C{tau dream start} reads the supervisor's answer from its ready pipe on
    the reactor.
    """

    async def test_answerThenClose(self):
        from tau.cli.dream import _readAll

        readEnd, writeEnd = os.pipe()
        reading = Deferred.fromCoroutine(_readAll(reactor, readEnd, 30))
        os.write(writeEnd, b"rea")
        os.write(writeEnd, b"dy\n")
        self.assertFalse(reading.called)
        os.close(writeEnd)
        self.assertEqual(await reading, "ready\n")

    async def test_silenceTimesOut(self):
        """
        A supervisor that says nothing (and keeps the pipe open) is given
        up after the timeout, with what it said so far.
        """
        from tau.cli.dream import _readAll

        readEnd, writeEnd = os.pipe()
        self.addCleanup(os.close, writeEnd)
        started = reactor.seconds()
        self.assertEqual(await _readAll(reactor, readEnd, 0.3), "failed: timed out")
        self.assertGreaterEqual(reactor.seconds() - started, 0.3)
        readEnd, writeEnd2 = os.pipe()
        self.addCleanup(os.close, writeEnd2)
        os.write(writeEnd2, b"fai")
        self.assertEqual(await _readAll(reactor, readEnd, 0.3), "fai")
