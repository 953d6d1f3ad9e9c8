"""
Project config compiler benchmark (issue 14 item 9, the figure
bench/tns.py quotes).

    python bench/compile.py [--resources 1000] [--runs 5] [--quick] [--json]

Generates a project of --resources resources of every kind (a tenth of them
in two applications; functions and websites on domains, tagged with
smartops built from libraries) and prints the median over --runs runs of:

  - compile: seconds of tau.project.compileProject on it (read, parse,
    check every field and reference, build the object and the indexes);
  - baseline: seconds to read and parse the same YAML files alone with
    pyyaml's libyaml SafeLoader (yaml.load), and the ratio compile/baseline.

generateProject(root, resources) and compileSeconds(root, runs) are what
bench/tns.py calls.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tau.project import compileProject  # noqa: E402
from tau.project.indexes import multihash  # noqa: E402

KINDS = ("functions", "websites", "libraries", "domains", "databases", "storages", "messaging", "services", "smartops")


def _resource(kind, i, domains, smartops):
    tags = [f"smartops:{smartops[i % len(smartops)]}"] if smartops and kind != "smartops" else []
    common = {"id": multihash(f"{kind}-{i}"), "description": f"{kind} number {i}", "tags": tags}
    if kind == "functions":
        return {**common, "source": ".", "trigger": {"type": "https", "method": "GET", "domains": [domains[i % len(domains)]], "paths": [f"/f{i}"]}, "execution": {"timeout": "5s", "memory": "16MB", "call": "handle"}}
    if kind == "websites":
        return {**common, "domains": [domains[i % len(domains)]], "paths": [f"/w{i}"], "source": {"branch": "main", "github": {"id": str(100000 + i), "fullname": f"acme/site{i}"}}}
    if kind == "libraries":
        return {**common, "tags": [], "source": {"branch": "main", "path": "/", "github": {"id": str(200000 + i), "fullname": f"acme/lib{i}"}}}
    if kind == "domains":
        return {**common, "fqdn": f"d{i}.bench.example", "certificate": {"type": "auto"}}
    if kind == "databases":
        return {**common, "match": f"db{i}", "access": {"network": "host"}, "storage": {"size": "1GB"}}
    if kind == "storages":
        return {**common, "match": f"st{i}", "object": {"versioning": True, "size": "10GB"}}
    if kind == "messaging":
        return {**common, "channel": {"match": f"chan{i}"}, "bridges": {"websocket": {"enable": True}}}
    if kind == "services":
        return {**common, "protocol": f"/svc{i}/v1"}
    return {**common, "source": f"libraries/lib{i % 10}", "execution": {"timeout": "1s", "memory": "8MB", "call": "check"}}


def generateProject(root, resources=1000):
    """
    Write a project of C{resources} resources in folder C{root}.
    """
    root = Path(root)
    (root / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"id": multihash("bench-project"), "name": "bench", "notification": {"email": "ops@bench.example"}}))
    # Shared resources first: what the others reference.
    plan = [("libraries", 10), ("smartops", 10), ("domains", 20)]
    left = resources - sum(n for _, n in plan)
    others = [k for k in KINDS if k not in ("libraries", "smartops", "domains")]
    for index, kind in enumerate(others):
        plan.append((kind, left // len(others) + (1 if index < left % len(others) else 0)))
    names = {"domains": [f"dom{i}" for i in range(20)], "smartops": [f"op{i}" for i in range(10)]}
    apps = [root / "applications" / "app0", root / "applications" / "app1"]
    for number, app in enumerate(apps):
        app.mkdir(parents=True, exist_ok=True)
        (app / "config.yaml").write_text(yaml.safe_dump({"id": multihash(f"app-{number}")}))
    for kind, count in plan:
        prefix = {"libraries": "lib", "smartops": "op", "domains": "dom"}.get(kind, kind[:3])
        for i in range(count):
            shared = kind in ("libraries", "smartops", "domains")
            # A tenth of the other resources live in the two applications.
            folder = apps[i % 2] if not shared and i % 10 == 0 else root
            (folder / kind).mkdir(exist_ok=True)
            body = _resource(kind, i, names["domains"], names["smartops"] if kind != "libraries" else [])
            (folder / kind / f"{prefix}{i}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return root


def compileOnce(root):
    start = time.perf_counter()
    compileProject(str(root))
    return time.perf_counter() - start


def compileSeconds(root, runs=5):
    """
    The median seconds of compiling the project in C{root}, over C{runs} runs.
    """
    return statistics.median(compileOnce(root) for _ in range(runs))


def yamlFiles(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".yaml"))


def parseOnce(files):
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    start = time.perf_counter()
    for path in files:
        with open(path, "rb") as f:
            yaml.load(f.read().decode("utf-8"), Loader=loader)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resources", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="100 resources, 1 run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.resources, args.runs = 100, 1
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = generateProject(Path(tmp) / "project", args.resources)
        compiled = compileProject(str(root))
        files = yamlFiles(root)
        # Figure and baseline alternate, so a busy machine slows both alike.
        pairs = [(compileOnce(root), parseOnce(files)) for _ in range(args.runs)]
        seconds = statistics.median(c for c, _ in pairs)
        baseline = statistics.median(p for _, p in pairs)
        files = len(files)
    figures = {"resources": args.resources, "files": files, "runs": args.runs, "index_keys": len(compiled.indexes), "compile_s": seconds, "parse_s": baseline, "ratio": seconds / baseline}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.resources} resources in {files} files, {len(compiled.indexes)} index keys, medians of {args.runs} runs")
    print(f"compile      {seconds * 1000:8.1f} ms")
    print(f"parse alone  {baseline * 1000:8.1f} ms   (pyyaml libyaml, the same files)")
    print(f"ratio        {seconds / baseline:8.2f}")


if __name__ == "__main__":
    main()
