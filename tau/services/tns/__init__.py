"""
The tns service: Taubyte's project registry.  Compiled project configs are
stored as a tree of keys in the replicated kvdb and served on C{/tns/v1}
with Taubyte's commands (C{push}, C{fetch}, C{lookup}, C{list}, C{stats}).

Modules: L{config} (the C{tns} config section), L{paths} (the key tree:
paths, stored keys and values, who owns a key, update topics),
L{storage} (every kvdb call), L{tenancy} (who reaches which project),
L{commands} (the p2p commands), L{lookups} (index -> resource, host and
path -> function or website), L{service} (the service and L{makeTNS}),
L{client} (what other services and the control API use, with its cache).
"""

PROTOCOL = "/tns/v1"
