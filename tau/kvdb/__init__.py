"""
Replicated key/value databases: a Merkle-CRDT (last write wins per key),
deltas as signed DAG-CBOR blocks, heads on pubsub, deltas over Bitswap, the
materialised view in SQLite.  See L{tau.kvdb.replica} and
L{tau.kvdb.service}.
"""

from tau.kvdb.codec import InvalidBlock
from tau.kvdb.service import KVDBService, ReplicationTimeout

__all__ = ["InvalidBlock", "KVDBService", "ReplicationTimeout"]
