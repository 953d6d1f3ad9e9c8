"""
Whatever a repository holds, compiling it gives a tree or ProjectErrors,
never another exception.
"""

import shutil
import tempfile

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.project import ProjectErrors, compileProject
from tau.project.kinds import KINDS
from tests.project.helpers import IDS, write

_KEYS = sorted({part for kind in KINDS.values() for field in kind.fields for part in field.path} | {"github", "object", "streaming", "service", "useRegex"})

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.sampled_from(IDS + ["http", "https", "p2p", "pubsub", "GET", "1s", "-1h", "10MB", "1.5KiB", ".", "libraries/lib", "smartops:op", "../x", "/x", "all", "host", "subnet", "inline", "a.example.com", ""]),
    st.text(max_size=8),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)), max_leaves=12)
_documents = st.one_of(_values, st.dictionaries(st.sampled_from(_KEYS), _values, max_size=8))


class RobustnessTests(SynchronousTestCase):
    @settings(max_examples=100)
    @given(st.dictionaries(st.tuples(st.sampled_from(sorted(KINDS)), st.sampled_from(["a", "b", "lib", "op", "x"])), _documents, max_size=6))
    def test_anyDocuments(self, documents):
        root = tempfile.mkdtemp()
        try:
            files = {f"{group}/{name}.yaml": yaml.safe_dump(doc) for (group, name), doc in documents.items()}
            files.update({f"applications/app/{group}/{name}.yaml": yaml.safe_dump(doc) for (group, name), doc in list(documents.items())[:2]})
            files["applications/app/config.yaml"] = f"id: {IDS[9]}\n"
            try:
                compileProject(write(root, files))
            except ProjectErrors as e:
                for error in e.errors:
                    self.assertIsInstance(error.line, int)
                    self.assertTrue(error.field)
        finally:
            shutil.rmtree(root)
