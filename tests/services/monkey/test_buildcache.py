"""
The build cache: which sources count as unchanged, and what it keeps.
"""

import json
import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.services.monkey import buildcache
from tau.services.monkey.buildcache import BuildCache, TooBig, sourceDigest


def tree(root, files):
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    return root


class DigestTests(TestCase):
    def test_whatChangesTheDigest(self):
        """
        Bytes, a path, the executable bit, a new file and the salt each
        change the digest; the time a file was written does not.
        """
        root = tree(self.mktemp(), {"a/main.wat": "(module)", ".taubyte/build.sh": "build\n"})
        base = sourceDigest(root)
        self.assertEqual(sourceDigest(root), base)
        os.utime(os.path.join(root, "a/main.wat"), (1, 1))
        self.assertEqual(sourceDigest(root), base)
        self.assertNotEqual(sourceDigest(root, "tau/wat"), base)
        os.chmod(os.path.join(root, ".taubyte/build.sh"), 0o755)
        executable = sourceDigest(root)
        self.assertNotEqual(executable, base)
        tree(root, {"a/main.wat": "(module )"})
        self.assertNotEqual(sourceDigest(root), executable)
        moved = tree(self.mktemp(), {"b/main.wat": "(module)", ".taubyte/build.sh": "build\n"})
        self.assertNotEqual(sourceDigest(moved), base)

    def test_limits(self):
        """
        A folder of exactly MAX_FILES files is digested, one more is too
        big to cache (it is built every time).
        """
        self.patch(buildcache, "MAX_FILES", 3)
        root = tree(self.mktemp(), {"1": "", "2": "", "3": ""})
        sourceDigest(root)
        tree(root, {"4": ""})
        self.assertRaises(TooBig, sourceDigest, root)
        self.patch(buildcache, "MAX_BYTES", 10)
        self.assertRaises(TooBig, sourceDigest, tree(self.mktemp(), {"big": "x" * 11}))


class CacheTests(TestCase):
    async def test_keptAcrossRestartsAndBounded(self):
        path = os.path.join(self.mktemp(), "builds.json")
        cache = BuildCache(reactor, path, maxEntries=2)
        for key, cid in (("k1", "c1"), ("k2", "c2"), ("k3", "c3")):
            await cache.put(key, cid)
        again = BuildCache(reactor, path, maxEntries=2)
        self.assertEqual([await again.get(k) for k in ("k1", "k2", "k3")], [None, "c2", "c3"])
        self.assertIsNone(await again.get(None))
        with open(path, "w") as f:
            f.write("not json")
        self.assertIsNone(await BuildCache(reactor, path).get("k2"))
        with open(path, "w") as f:
            json.dump({"k": 5}, f)
        self.assertIsNone(await BuildCache(reactor, path).get("k"))
