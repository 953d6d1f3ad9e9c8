"""
Reachability: what a node believes of itself (unknown, public or private),
with a confidence, fed one observation at a time.  Sans-IO.

The rules follow go-libp2p's AutoNAT v1 client:

 - C{public}: one successful dial-back is enough to become public (from any
   status; the confidence restarts at 0); a further one raises the
   confidence up to L{MAX_CONFIDENCE}.
 - C{private}: while another status is held with some confidence, a failed
   dial-back only lowers that confidence; at 0 the status becomes private.
   Further ones raise the confidence.
 - C{unknown} (a peer could not tell): lowers the confidence; at 0 the
   status becomes unknown.  It never raises the confidence.
"""

UNKNOWN = "unknown"
PUBLIC = "public"
PRIVATE = "private"
STATUSES = (UNKNOWN, PUBLIC, PRIVATE)

MAX_CONFIDENCE = 3

__all__ = ["UNKNOWN", "PUBLIC", "PRIVATE", "STATUSES", "MAX_CONFIDENCE", "Reachability"]


class Reachability:
    """
    @ivar status: L{UNKNOWN}, L{PUBLIC} or L{PRIVATE}.
    @ivar confidence: 0 to L{MAX_CONFIDENCE}.
    """

    def __init__(self, status=UNKNOWN, confidence=0):
        if status not in STATUSES:
            raise ValueError(f"reachability is one of {', '.join(STATUSES)}, not {status!r}")
        self.status = status
        self.confidence = confidence

    def __repr__(self):
        return f"<Reachability {self.status} confidence={self.confidence}>"

    def observe(self, observation):
        """
        Take one observation (L{PUBLIC}, L{PRIVATE} or L{UNKNOWN}).

        @return: True when the status changed.
        """
        if observation not in STATUSES:
            raise ValueError(f"unknown observation {observation!r}")
        if observation == UNKNOWN:
            if self.confidence > 0:
                self.confidence -= 1
                return False
            changed = self.status != UNKNOWN
            self.status = UNKNOWN
            return changed
        if observation == self.status:
            self.confidence = min(self.confidence + 1, MAX_CONFIDENCE)
            return False
        if observation == PUBLIC or self.confidence == 0:
            self.status = observation
            self.confidence = 0
            return True
        self.confidence -= 1
        return False

    @property
    def confident(self):
        return self.confidence >= MAX_CONFIDENCE
