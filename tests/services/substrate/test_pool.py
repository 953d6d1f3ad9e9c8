"""
L{tau.services.substrate.wasm.instance.Pool}: how many idle instances it
keeps.
"""

from twisted.trial.unittest import SynchronousTestCase

from tau.services.substrate.wasm.instance import Pool


class PoolTests(SynchronousTestCase):
    def test_perKey(self):
        """
        Exactly C{size} idle instances of one key are kept; one more is
        dropped.  They come back last in, first out.
        """
        pool = Pool(size=2, total=10)
        for instance in ("a", "b", "c"):
            pool.give("f", instance)
        self.assertEqual(pool.idle("f"), 2)
        self.assertEqual([pool.take("f"), pool.take("f"), pool.take("f")], ["b", "a", None])

    def test_total(self):
        """
        Exactly C{total} idle instances are kept in all; one more drops the
        one of the key given back longest ago.
        """
        pool = Pool(size=2, total=3)
        pool.give("f", "f1")
        pool.give("g", "g1")
        pool.give("f", "f2")
        self.assertEqual((pool.idle("f"), pool.idle("g")), (2, 1))
        pool.give("h", "h1")
        self.assertEqual((pool.idle("f"), pool.idle("g"), pool.idle("h")), (2, 0, 1))
        pool.give("h", "h2")
        self.assertEqual((pool.idle("f"), pool.idle("h")), (1, 2))
        self.assertEqual(pool.take("f"), "f2")
