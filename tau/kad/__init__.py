"""
The libp2p Kademlia DHT (C{/ipfs/kad/1.0.0}), sans-IO.

  - L{tau.kad.keys}: the key space (sha256, XOR, buckets);
  - L{tau.kad.messages}: wire messages with limits;
  - L{tau.kad.routing}: the routing table;
  - L{tau.kad.lookup}: the iterative lookup engine;
  - L{tau.kad.records}: provider and value records in SQLite, validators;
  - L{tau.kad.dht}: L{KademliaCore}, answering requests
    (L{tau.kad.handlers}) and running queries (L{tau.kad.queries}) over an
    L{IKadTransport} that the network layer implements;
  - L{tau.kad.wire}: serving and sending kad messages on libp2p streams;
  - L{tau.kad.simulation}: many in-memory nodes on one clock.
"""
