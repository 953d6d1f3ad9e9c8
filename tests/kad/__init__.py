"""
Tests for L{tau.kad}: the Kademlia DHT core.
"""
