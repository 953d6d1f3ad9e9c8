"""
The sandbox's status line and what it means.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from tau.build.outcome import failure, statusLine
from tau.build.sandbox import MiB, Limits

LIMITS = Limits(cpuSeconds=3, sourceBytes=2 * MiB, outputBytes=MiB, tmpBytes=1000)
ROOMY = {"/src": MiB, "/out": MiB, "/tmp": MiB}


class StatusLineTests(TestCase):
    def line(self, data):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return statusLine(path)

    def test_read(self):
        self.assertEqual(self.line(b"tau-sandbox 0 1 2 3\ntar bytes"), ("0", {"/src": 1, "/out": 2, "/tmp": 3}))
        self.assertEqual(self.line(b"tau-sandbox copy 0 2 3\n")[0], "copy")

    def test_refused(self):
        for data in (b"", b"tau-sandbox 0 1 2\n", b"tau-sandbox x 1 2 3\n", b"other 0 1 2 3\n",
                     b"tau-sandbox 0 1 2 -3\n", b"tau-sandbox 0 1 2 3 4\n"):
            self.assertIsNone(self.line(data), data)

    @given(st.binary(max_size=300))
    def test_anyBytes(self, data):
        found = self.line(data)
        if found is not None:
            self.assertTrue(data.startswith(b"tau-sandbox "))


class FailureTests(TestCase):
    def test_success(self):
        self.assertIsNone(failure("0", ROOMY, LIMITS))
        self.assertIsNone(failure("0", {**ROOMY, "/out": 0}, LIMITS))

    def test_statuses(self):
        self.assertEqual(failure("2", ROOMY, LIMITS), "exited with status 2")
        self.assertEqual(failure("152", ROOMY, LIMITS), "stopped at the CPU-time limit of 3 s")
        self.assertEqual(failure("153", ROOMY, LIMITS), "stopped at the file-size limit")
        self.assertEqual(failure("137", ROOMY, LIMITS), "killed by SIGKILL")

    def test_full(self):
        """
        A failed command whose tmpfs has less than 64 KiB free filled it;
        64 KiB free is not full.
        """
        self.assertEqual(failure("1", {**ROOMY, "/tmp": 64 * 1024 - 1}, LIMITS),
                         "exited with status 1 after filling /tmp (its limit is 1000 bytes)")
        self.assertEqual(failure("1", {**ROOMY, "/tmp": 64 * 1024}, LIMITS), "exited with status 1")

    def test_copy(self):
        self.assertEqual(failure("copy", {**ROOMY, "/src": 0}, LIMITS),
                         "the source does not fit the /src limit of 2 MiB")
        self.assertEqual(failure("copy", ROOMY, LIMITS), "copying the source into the sandbox failed")
