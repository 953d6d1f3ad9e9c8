"""
The seer service: the cloud's authoritative DNS server.  Nodes tell seer
on C{/seer/v1} what they run (C{announce}) and that they are alive
(C{heartbeat}); seer answers DNS queries for the cloud's names with the
nodes that told it so within a TTL.

Modules: L{config} (the C{seer} config section), L{registry} (the nodes
seer heard from, with expiry), L{commands} (the p2p commands and their
signatures), L{dns} (the zones and the DNS server), L{service} (the
service and its factory), L{beacon} (what a node runs to tell seer).
"""

PROTOCOL = "/seer/v1"
