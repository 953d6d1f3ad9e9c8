"""
Small project repositories written by tests.
"""

import os
from pathlib import Path

from tau.project import ProjectErrors, compileProject

FIXTURES = Path(__file__).parent / "fixtures"

PROJECT_ID = "QmQnBpGSSrWLdp3GGKkeqQZ5C1Ce55NSgDiKJhC9Wver7A"
#: Valid CIDv0 ids for resources (sha2-256 multihashes of short words).
IDS = [
    "QmWUtSj62Xpc9MhEutPmmjZ2aWQGMJBhopQMuHNxnSvt4M",
    "QmehDMFsPNpKna8Wb2QSvCHSPmE7puDfJqWAryg1rsDi7y",
    "QmWBLPr1Yyvv7HoRKqojh25X7N9S4uBmmcVjJYBavXGXUf",
    "QmafPNqLNJV9pdJtB2HN2r5K41WCUvSkmvmAyTJ6PzGC83",
    "QmQX3hTzA4dWt9huKiV8XKr5qugxc2fpjEXCvUGqnoFG6E",
    "QmRvfVD2rvWewxhzEFM4QHdyeBe4BCEPYXsdYqYWsUQoqy",
    "QmTJ65L54uFLGy4o7RYPjY3LmfnAx7eu1rcnSvVP1sr5cJ",
    "QmdcE6MJLrhzJ7ggfRdGEaLHqYJskmPVyR1pWKnW4FivzA",
    "QmYyGtbAfLeZNPFKEg3seJtkKY3TTQMmC93S2mjyRsZF2o",
    "QmZCstKkwsL212pMaf4xk4V5AbgVfJC2NNSJdu8UZtqSpS",
]
APP_ID = "Qmci9X1KkbckPaQQFsio8AEeRx1qR6Mq5Dx3CuGajYadzh"
APP2_ID = "QmW3hTgwBEejrFMy2aifFsXf8u7UZNEz4ryxirZh7PcE4N"

CONFIG = f"id: {PROJECT_ID}\n"


def write(root, files):
    """
    Write C{files} (relative path -> text) under C{root}; a project
    C{config.yaml} is added unless given.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = {"config.yaml": CONFIG, **files}
    for rel, text in files.items():
        if text is None:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(root)


def function(id=IDS[0], extra=""):
    """
    A valid https function's YAML (on domain C{dom}), plus C{extra} lines.
    """
    return (
        f"id: {id}\n"
        "source: .\n"
        "trigger:\n  type: https\n  method: GET\n  domains: [dom]\n  paths: [/]\n"
        "execution:\n  timeout: 1s\n  memory: 1MB\n  call: run\n" + extra
    )


def domain(id=IDS[1], fqdn="api.example.com"):
    return f"id: {id}\nfqdn: {fqdn}\n"


def library(id=IDS[3], extra=""):
    return f"id: {id}\nsource:\n  github: {{id: 1, fullname: acme/lib}}\n" + extra


def smartop(id=IDS[4], source="."):
    return f"id: {id}\nsource: {source}\nexecution: {{timeout: 1s, memory: 1MB, call: check}}\n"


class ProjectTestMixin:
    def compiled(self, files, **kwargs):
        return compileProject(write(self.mktemp(), files), **kwargs)

    def errors(self, files, **kwargs):
        """
        The errors compiling C{files} gives, as C{FILE:LINE: FIELD: message}
        lines.
        """
        root = write(self.mktemp(), files)
        try:
            compileProject(root, **kwargs)
        except ProjectErrors as e:
            return [str(error) for error in e.errors]
        self.fail("the project compiled")

    def assertError(self, files, expected):
        """
        Compiling C{files} fails with exactly the error C{expected}.
        """
        self.assertEqual(self.errors(files), [expected])


def symlink(target, link):
    os.symlink(target, link)
