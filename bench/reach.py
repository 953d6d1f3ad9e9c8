"""
Reachability, in one run (issue 17): Noise against TLS, a hole-punched
connection against a relayed one and a direct one, and an onion connection
on a private Tor network.

    python bench/reach.py                 # everything (needs root for the namespaces, tor)
    python bench/reach.py --quick         # smaller transfers, fewer runs
    python bench/reach.py --json

Parts (each runnable alone, each with its own notes):

  - bench/_reach_noise.py: two tau hosts on loopback; one-stream
    throughput and set-up time, Noise / TLS (target: throughput >= 0.8).
  - bench/_reach_holepunch.py: real twistd nodes in network namespaces
    behind nftables NATs (tests/natnet.py); one-stream throughput of the
    hole-punched, relayed and direct paths (target: hole-punched >= 0.9
    of direct), and the relay's own byte counters meanwhile (must be 0).
  - bench/_reach_onion.py: a private Tor network on loopback
    (tests/torNetwork.py); onion connection set-up, ping and throughput
    (reported, no target).

Figures are medians of several runs on a shared machine: compare the
ratios, not the absolute numbers.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _reach_holepunch  # noqa: E402
import _reach_noise  # noqa: E402
import _reach_onion  # noqa: E402


async def measureAll(reactor, quick=False):
    """
    Every part in turn; a part that cannot run here says why instead of
    its figures.
    """
    mib, runs = (16, 3) if quick else (64, 5)
    parts = {
        "noise": lambda: _reach_noise.measure(reactor, mib=mib, runs=runs, dials=10 if quick else 30),
        "holepunch": lambda: _reach_holepunch.measure(reactor, runs=runs, mib=mib),
        "onion": lambda: _reach_onion.measure(reactor),
    }
    out = {}
    for name, part in parts.items():
        try:
            out[name] = await part()
        except Exception as e:
            out[name] = {"error": f"{type(e).__name__}: {e}"}
    return out


def summary(figures):
    """
    The lines that matter, with their targets.
    """
    lines = []
    noise = figures.get("noise", {})
    if "throughput_ratio" in noise:
        lines.append(f"noise/tls throughput  {noise['throughput_ratio']:.3f}  (target >= 0.8; "
                     f"tls {noise['tls_throughput_mib_s']:.1f} MiB/s, noise {noise['noise_throughput_mib_s']:.1f} MiB/s)")
        lines.append(f"noise/tls set-up      {noise['setup_ratio']:.3f}  "
                     f"(tls {noise['tls_setup_ms']:.2f} ms, noise {noise['noise_setup_ms']:.2f} ms)")
    hp = figures.get("holepunch", {})
    if "ratio_holepunched_direct" in hp:
        t = hp["throughput_mib_s"]
        lines.append(f"hole-punched/direct   {hp['ratio_holepunched_direct']:.3f}  (target >= 0.9; "
                     f"hole-punched {t['hole-punched']} MiB/s, direct {t['direct']}, relayed {t['relayed']})")
        lines.append(f"relayed/direct        {hp['ratio_relayed_direct']:.3f}")
        lines.append(f"set-up (s)            {hp['setup_s']}")
        lines.append(f"relay's own bytes during hole-punched transfers: {hp['relay_own_bytes_during_holepunched_perf']}")
    onion = figures.get("onion", {})
    if "onion_mib_s" in onion:
        lines.append(f"onion                 first connect {onion['connect_first_s']} s, next {onion['connect_next_median_s']} s, "
                     f"ping {onion['ping_rtt_median_ms']} ms, {onion['onion_mib_s']} MiB/s "
                     f"({onion['onion_over_tcp']} of TCP); private network bootstrapped in {onion['network_bootstrap_s']} s")
    for name, part in figures.items():
        for why in ("error", "skipped"):
            if why in part:
                lines.append(f"{name}: {why}: {part[why]}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB transfers, 3 runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def run(reactor):
        figures = await measureAll(reactor, quick=args.quick)
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print("\n".join(summary(figures)))

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
