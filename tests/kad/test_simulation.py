"""
A small run of L{tau.kad.simulation}: lookups succeed with a fifth of the
nodes silently gone, and their cost grows like log N, not like N.
"""

from twisted.trial.unittest import SynchronousTestCase

from tau.kad.simulation import SimNetwork, percentile, runScenario


class SimulationTests(SynchronousTestCase):
    def test_deterministic(self):
        a = runScenario(100, 0.2, lookups=10, seed=5)
        b = runScenario(100, 0.2, lookups=10, seed=5)
        self.assertEqual(a, b)

    def test_successWithDeadNodes(self):
        """
        200 nodes, 20% silent: every findPeer and findProviders succeeds, and
        lookups take few rounds.
        """
        rows = {r["op"]: r for r in runScenario(200, 0.2, lookups=40, seed=2)}
        self.assertGreaterEqual(rows["findpeer"]["success"], 0.99)
        self.assertGreaterEqual(rows["findprovs"]["success"], 0.99)
        self.assertGreaterEqual(rows["provide"]["success"], 0.9)
        for r in rows.values():
            self.assertLessEqual(r["rounds_p95"], 4)

    def test_logarithmicGrowth(self):
        """
        Eight times the nodes cost at most about log(800)/log(100) times the
        RPCs (with slack), far from eight times.
        """
        small = {r["op"]: r for r in runScenario(100, 0.0, lookups=30, seed=3)}
        large = {r["op"]: r for r in runScenario(800, 0.0, lookups=30, seed=3)}
        for op in ("provide", "findprovs", "findpeer"):
            self.assertLessEqual(large[op]["rpcs_median"], 2.0 * small[op]["rpcs_median"], op)
            self.assertLessEqual(large[op]["rounds_median"], small[op]["rounds_median"] + 2, op)

    def test_tablesFromGlobalView(self):
        """
        Tables built from the global view hold up to k peers per bucket, all
        with the right common prefix length.
        """
        net = SimNetwork(300, seed=1, k=8)
        net.buildTables()
        for core in list(net.nodes.values())[:20]:
            sizes = core.table.bucketSizes()
            self.assertTrue(all(n <= 8 for n in sizes.values()))
            self.assertEqual(sizes[0], 8)
            self.assertEqual(len(core.table), sum(sizes.values()))

    def test_percentile(self):
        self.assertEqual(percentile(list(range(1, 101)), 0.95), 95)
        self.assertEqual(percentile([3], 0.5), 3)
