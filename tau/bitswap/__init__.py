"""
Bitswap 1.2.0 (ipfs/specs BITSWAP.md): exchange blocks by CID with IPFS peers.

  - L{message}: the wire format and its limits;
  - L{cids}: binary CIDs, block prefixes, block verification, dag-pb links;
  - L{engine}: the serving side (per-peer ledgers);
  - L{client}: the fetching side (sessions, DAG walks);
  - L{network}: streams (inbound read loops, one outbound queue per peer);
  - L{service}: L{BitswapService}, all of it on a host.
"""

from tau.bitswap.client import BadBlock, FetchTimeout, Session
from tau.bitswap.message import PROTOCOL_120, MessageError
from tau.bitswap.service import BitswapService

__all__ = ["BitswapService", "FetchTimeout", "BadBlock", "MessageError", "Session", "PROTOCOL_120"]
