"""
AutoNAT v1 (C{/libp2p/autonat/1.0.0}) and what a node does with the verdict.

 - L{tau.autonat.messages}: the wire messages, sans-IO;
 - L{tau.autonat.server}: answering dial-back requests (the observed IP
   only, rate-limited, from a separate identity);
 - L{tau.autonat.client}: asking a peer to dial us back;
 - L{tau.autonat.reachability}: the unknown / public / private machine;
 - L{tau.autonat.service}: L{AutoNATService}, probing peers on a schedule;
 - L{tau.autonat.autorelay}: relay reservations while private;
 - L{tau.autonat.policy}: the node's reaction to a change of verdict;
 - L{tau.autonat.peers}: the direct peers to ask, identify events.
"""

from tau.autonat.messages import PROTOCOL_ID
from tau.autonat.reachability import PRIVATE, PUBLIC, UNKNOWN

__all__ = ["PROTOCOL_ID", "PUBLIC", "PRIVATE", "UNKNOWN"]
