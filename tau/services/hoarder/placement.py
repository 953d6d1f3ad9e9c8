"""
Rendezvous (highest random weight) placement, as Taubyte's hoarder places:
the score of an item C{hash} on a member is xxhash64(C{hash} ‖ 0x00 ‖
C{peer id text}); the members with the highest scores hold it, a tie going
to the lower peer id.  Every node computes the same owners from the same
members, and when a member goes only the items it held move.
"""

import xxhash

#: replicas of a database or storage instance, and of a stashed artefact
INSTANCE_REPLICAS = 3
STASH_REPLICAS = 2


def score(hash, peer):
    """
    The weight of C{hash} (text) on member C{peer} (its id as text).
    """
    return xxhash.xxh64_intdigest(hash.encode("utf-8") + b"\x00" + str(peer).encode("utf-8"))


def ranked(hash, peers):
    """
    C{peers} (ids, or anything whose C{str} is the id), best first.
    """
    return sorted(peers, key=lambda p: (-score(hash, p), str(p)))


def owners(hash, peers, target):
    """
    The C{target} members that should hold C{hash}, best first.
    """
    if target <= 0:
        return []
    return ranked(hash, peers)[:target]


def instanceTarget(fleet):
    """
    Replicas of a database or storage instance in a fleet of C{fleet}
    members: max(1, min(3, fleet)).
    """
    return max(1, min(INSTANCE_REPLICAS, fleet))


def stashTarget(fleet, wanted=STASH_REPLICAS):
    """
    Replicas of a stashed artefact: max(1, min(C{wanted}, fleet)).
    """
    return max(1, min(wanted, fleet))
