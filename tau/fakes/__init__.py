"""
Fakes of the node's capabilities (L{tau.interfaces}) for tests: one per
interface, each checked against its interface with C{verifyObject} (as
txtorcon ships fakes for its users' tests), so a fake cannot drift from
what the node provides.  They keep everything in memory, answer at once
(no threads, no sockets, no timers), and record what they were asked so a
test can check it.

 - L{FakeHost} (L{IHost}): hosts that share a C{network} dict reach each
   other; a stream is a pair of in-memory L{StreamProtocol}s; a test can
   also add connections to peers with no host behind them.
 - L{FakeContent} (L{IContent}): the real UnixFS importer and exporter over
   blocks in memory, so CIDs are the real ones.
 - L{FakeRouting} (L{IRouting}), L{FakePubSub} (L{IPubSub}), L{FakeKVDB}
   (L{IKVDB}).
 - L{fakeTNSClient} (L{ITNSClient}): the real client (its cache and
   lookups) on L{FakeTNSCalls}, a registry in memory answering tns's
   C{fetch}, C{push}, C{lookup} and C{list} as tns does.

Modules: C{host}, C{content}, C{routing}, C{pubsub}, C{kvdb}, C{tns}; every
fake is imported from C{tau.fakes}.
"""

from tau.fakes.content import FakeContent
from tau.fakes.host import DialError, FakeConnection, FakeHost
from tau.fakes.kvdb import FakeKVDB, FakeReplica
from tau.fakes.pubsub import FakePubSub
from tau.fakes.routing import FakeRouting
from tau.fakes.tns import FakeTNSCalls, fakeTNSClient

__all__ = ["FakeHost", "FakeConnection", "FakeContent", "FakeRouting", "FakePubSub", "FakeKVDB", "FakeReplica",
           "DialError", "FakeTNSCalls", "fakeTNSClient"]
