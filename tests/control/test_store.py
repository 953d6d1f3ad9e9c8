"""
The control API's store commands are a translation onto the node's
content service: arguments in, answers out, and each typed error of the
service mapped to its status in one place.
"""

import io
from types import SimpleNamespace

from twisted.trial.unittest import TestCase

from tau.control import store as commands
from tau.control.routes import APIError
from tau.fakes import FakeContent
from tau.store import content


class TranslationTests(TestCase):
    def setUp(self):
        self.content = FakeContent()
        self.node = SimpleNamespace(content=self.content)

    async def test_addThenCatRange(self):
        answer = await commands.add(self.node, {"pin": ["false"]}, io.BytesIO(b"hello world"))
        self.assertEqual(answer["Size"], 11)
        self.assertEqual(await self.content.pins(), [])
        stream = await commands.cat(self.node, {"arg": [answer["Hash"]], "offset": ["6"], "length": ["3"]})
        self.assertEqual(b"".join([c async for c in stream.chunks]), b"wor")
        self.assertEqual(await commands.pinAdd(self.node, {"arg": ["/ipfs/" + answer["Hash"]]}),
                         {"Pins": [answer["Hash"]], "Blocks": 1})
        self.assertEqual(await commands.pinList(self.node, {}), {"Keys": [answer["Hash"]]})

    async def test_statuses(self):
        """Each typed error of the content service gets its status, the message naming the command."""
        for error, status in [(content.BadInput("bad"), 400), (content.NotPinned("x is not pinned"), 400),
                              (content.NotFound("block x not found"), 404),
                              (content.NotInTime("not found in time"), 504),
                              (content.StoreFull("no space left"), 507)]:
            async def failing():
                raise error
            with self.assertRaises(APIError) as e:
                await commands._guard("cat x", failing())
            self.assertEqual(e.exception.status, status, error)
            self.assertTrue(e.exception.message.startswith("cat x: "), e.exception.message)

    async def test_refusals(self):
        elsewhere = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
        for command, args, status in [(commands.cat, {"arg": ["nonsense"]}, 400),
                                      (commands.pinRemove, {"arg": [elsewhere]}, 400),
                                      (commands.cat, {"arg": [elsewhere]}, 404)]:
            with self.assertRaises(APIError) as e:
                await command(self.node, args)
            self.assertEqual(e.exception.status, status, e.exception.message)

    async def test_noContentService(self):
        with self.assertRaises(APIError) as e:
            await commands.pinList(SimpleNamespace(content=None), {})
        self.assertEqual(e.exception.status, 503)
