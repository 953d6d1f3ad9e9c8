"""
The control command C{listeners}: where a node started on port 0 listens.
"""

from twisted.trial.unittest import TestCase

from tests.test_node import api, startedNode


class ListenersTests(TestCase):
    timeout = 60

    async def test_seerAndAuth(self):
        """
        A node running seer and auth names its API, auth's HTTP and git
        listeners and seer's DNS over UDP and TCP, each with the port it
        was given; no p2p listener.
        """
        node = await startedNode(self, services=["seer", "auth"])
        status, answer = await api(node, "listeners")
        self.assertEqual(status, 200)
        found = {entry["Name"]: entry for entry in answer["Listeners"]}
        self.assertEqual(sorted(found), ["api", "auth-git", "auth-http", "seer-tcp", "seer-udp"])
        self.assertEqual(found["api"]["Port"], node.ports()["api"])
        self.assertEqual((found["seer-udp"]["Type"], found["seer-tcp"]["Type"]), ("UDP", "TCP"))
        seer = node.shapeServices["seer"]
        self.assertEqual(found["seer-udp"]["Port"], seer.ports[0].getHost().port)
        auth = node.shapeServices["auth"]
        self.assertEqual((found["auth-http"]["Address"], found["auth-http"]["Port"]),
                         ("127.0.0.1", auth.listener.port.getHost().port))
        self.assertTrue(all(entry["Port"] > 0 for entry in found.values()))
