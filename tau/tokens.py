"""
Token buckets by key (a peer, an address): how fast each may do something,
with bursts, in bounded memory.
"""

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """
    One bucket of C{burst} tokens per key, refilled at C{rate} tokens a
    second; each action takes one.

    At most C{maxKeys} keys are remembered: when a new one comes, the keys
    whose buckets are full again are forgotten (they lose nothing), or, if
    none is, the older half.

    @ivar burst: tokens of a full bucket.
    @ivar rate: tokens added per second.
    """

    def __init__(self, burst, rate, maxKeys=10000):
        self.burst = burst
        self.rate = rate
        self.maxKeys = maxKeys
        self._buckets = {}  # key -> [tokens, last]

    def take(self, key, now):
        """
        Take a token of C{key}'s bucket at C{now} (seconds).

        @return: whether there was one.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.maxKeys:
                self._forget(now)
            bucket = self._buckets[key] = [self.burst, now]
        bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if bucket[0] < 1:
            return False
        bucket[0] -= 1
        return True

    def _forget(self, now):
        full = [k for k, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for k in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[k]

    def __len__(self):
        return len(self._buckets)
