"""
One linker per module (L{tau.services.substrate.wasm.instance.link}): the
host functions are defined once and each call answers for the instance
running on the calling thread (L{hostabi.running}).
"""

import threading

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from wasmtime import Module, Trap, wat2wasm

from tau.services.substrate.wasm import HttpRequest, Limits, Runtime, hostabi
from tau.services.substrate.wasm.engine import makeEngine
from tau.services.substrate.wasm.instance import Instance, link
from tests.services.substrate.helpers import GUEST


class SharedLinkTests(SynchronousTestCase):
    def setUp(self):
        self.engine = makeEngine()
        self.module = Module(self.engine, wat2wasm(GUEST))
        self.linked = link(self.engine, self.module)

    def instance(self):
        instance = Instance(self.engine, self.module, "test", Limits())
        instance.create(1000, self.linked)
        return instance

    def test_eachInstanceItsOwnEvents(self):
        """
        Two instances of one link, called from two threads at once, each
        answer their own request: a host call finds the instance running on
        its thread.
        """
        instances = [self.instance(), self.instance()]
        answers = {0: [], 1: []}

        def run(i):
            for n in range(200):
                body = f"{i}:{n}".encode()
                response = instances[i].call("echo", HttpRequest("POST", "/", "h", [], body), 1000)
                answers[i].append(response.final()[2] == body)

        threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(answers, {0: [True] * 200, 1: [True] * 200})

    def test_runningCleared(self):
        """
        Once a call is over, cleanly or by a trap, no instance is running on
        the thread.
        """
        instance = self.instance()
        instance.call("hello", HttpRequest(), 1000)
        self.assertIsNone(hostabi.running.instance)
        self.assertRaises(Trap, instance.call, "boom", HttpRequest(), 1000)
        self.assertIsNone(hostabi.running.instance)

    def test_noInstanceRunning(self):
        """
        A host function called where no instance runs refuses (the guest
        would trap) rather than answer for another instance.
        """
        self.instance()
        call = hostabi._dispatch("eventHttpWrite", True)
        self.assertRaises(hostabi.NotRunning, call, None, 0, 0, 0, 0)

    def test_sameFunctions(self):
        """
        The shared linker defines the same functions, with the same
        signatures, as the providers give an instance.
        """
        table = hostabi.hostTable(self.instance())
        self.assertEqual(sorted(table), sorted(name for name, n, hasResult in hostabi.signatures()))
        self.assertEqual(len(table), len(hostabi.signatures()))


class RuntimeLinkTests(TestCase):
    timeout = 30

    def test_linkedOncePerModule(self):
        """
        Cold starts of one module under different limits link it once.
        """
        runtime = Runtime(reactor)
        runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(runtime.stop()))

        async def go():
            cid = await runtime.load(wat2wasm(GUEST))
            for timeout in (1.0, 2.0, 3.0):
                self.assertEqual((await runtime.call(cid, "hello", HttpRequest(), Limits(timeout=timeout)))[0], 200)
            self.assertEqual(runtime.coldStarts, 3)
            self.assertEqual(list(runtime._linked), [cid])
        return Deferred.fromCoroutine(go())
