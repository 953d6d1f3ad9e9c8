"""
Kademlia lookups at scale, by deterministic simulation (tau.kad.simulation).

For N = 100, 1,000 and 5,000 nodes, with all nodes alive and with 20% of
them silently gone (requests to them time out after 10 s), it runs
findPeer, provide and findProviders lookups between random live nodes and
prints per operation the success rate (for provide: the share of the true k
closest live nodes reached), the median and p95 rounds (hops) and RPCs, and
the simulated lookup time (latency 10-100 ms per message).

The baseline is log2(N): the column rpcs/log2N stays flat or falls when the
cost grows logarithmically, and the last lines compare the growth of the
median RPCs from the smallest to the largest N with the growth of log N and
of N.

Routing tables are built from the global view (k random peers per bucket)
instead of bootstrapping every node through the network; see the docstring
of tau.kad.simulation.

    python bench/dht.py [--sizes 100,1000,5000] [--lookups 200] [--seed 1]
"""

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tau.kad.simulation import runScenario  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--dead", default="0,0.2")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--alpha", type=int, default=10)
    parser.add_argument("--beta", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    deads = [float(d) for d in args.dead.split(",")]

    header = (
        f"{'N':>6} {'dead':>5} {'op':<10} {'success':>8} {'rounds':>8} {'p95':>4} "
        f"{'rpcs':>6} {'p95':>5} {'rpcs/log2N':>10} {'time s':>7} {'p95':>6} {'wall s':>7}"
    )
    print(f"k=20 alpha={args.alpha} beta={args.beta}, {args.lookups} lookups per row, seed {args.seed}")
    print(header)
    print("-" * len(header))
    medians = {}
    for n in sizes:
        for dead in deads:
            start = time.perf_counter()
            rows = runScenario(n, dead, lookups=args.lookups, seed=args.seed, alpha=args.alpha, beta=args.beta)
            wall = time.perf_counter() - start
            for r in rows:
                medians[(n, dead, r["op"])] = r["rpcs_median"]
                print(
                    f"{n:>6} {dead:>5.0%} {r['op']:<10} {r['success']:>8.1%} "
                    f"{r['rounds_median']:>8} {r['rounds_p95']:>4} "
                    f"{r['rpcs_median']:>6} {r['rpcs_p95']:>5} {r['rpcs_median'] / math.log2(n):>10.2f} "
                    f"{r['time_median']:>7.2f} {r['time_p95']:>6.2f} {wall:>7.1f}"
                )
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        print()
        print(f"growth {lo} -> {hi} nodes: N x{hi / lo:.0f}, log N x{math.log(hi) / math.log(lo):.2f}")
        for dead in deads:
            for op in ("findpeer", "provide", "findprovs"):
                ratio = medians[(hi, dead, op)] / medians[(lo, dead, op)]
                print(f"  {op:<10} dead {dead:>4.0%}: median RPCs x{ratio:.2f}")


if __name__ == "__main__":
    main()
