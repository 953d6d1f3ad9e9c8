"""
The node's capabilities provide their interfaces (tau.interfaces).
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyClass

from tau.host import Host
from tau.interfaces import IContent, IHost, IKVDB, IPatrickClient, IPubSub, IRouting, ITNSClient
from tau.kad.network import DHTService
from tau.kvdb.service import KVDBService
from tau.pubsub.service import PubSubService
from tau.services.patrick.client import PatrickClient
from tau.services.tns.client import TNSClient
from tau.store.content import ContentService


class ImplementationTests(TestCase):
    def test_classes(self):
        for interface, cls in ((IHost, Host), (IRouting, DHTService), (IPubSub, PubSubService), (IKVDB, KVDBService),
                                 (IContent, ContentService), (ITNSClient, TNSClient),
                                 (IPatrickClient, PatrickClient)):
            self.assertTrue(verifyClass(interface, cls))
