"""
hoarder: keeps the cloud's databases and storages on enough nodes, and the
artefacts monkeys stash (build zips, logs) on enough nodes, with no
auction: each node computes the same placement (rendezvous hashing,
L{tau.services.hoarder.placement}) over the same live members
(L{tau.services.hoarder.membership}).
"""

#: the command protocol
PROTOCOL = "/hoarder/v1"
#: the heartbeats of the members, and the requests to reconcile
MEMBERS_TOPIC = "/hoarder/v1.0/members"
RECONCILE_TOPIC = "/hoarder/v1.0/reconcile"
#: the kvdb database of the registry (claims and metas)
REGISTRY = "hoarder"
