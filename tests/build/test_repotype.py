"""
Repository types, decided as Taubyte's monkey decides them.
"""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tau.build.repotype import RepositoryType, RepositoryTypeError, repositoryType, typeKey

P = "QmProject"
CODE, CONFIG = 101, 102


class RepositoryTypeTests(SynchronousTestCase):
    def setUp(self):
        self.tns = {}
        self.asked = []

    async def fetch(self, path):
        self.asked.append(path)
        return self.tns.get(tuple(path))

    def typeOf(self, repoId, provider="github"):
        d = Deferred.fromCoroutine(repositoryType(repoId, P, CODE, CONFIG, self.fetch, provider))
        return self.successResultOf(d)

    def failureOf(self, repoId):
        d = Deferred.fromCoroutine(repositoryType(repoId, P, CODE, CONFIG, self.fetch))
        return str(self.failureResultOf(d, RepositoryTypeError).value)

    def test_codeAndConfig(self):
        """
        The project's code and config repositories are known by id, without
        asking tns.
        """
        self.assertIs(self.typeOf(CODE), RepositoryType.CODE)
        self.assertIs(self.typeOf(CONFIG), RepositoryType.CONFIG)
        self.assertEqual(self.asked, [])

    def test_libraryAndWebsite(self):
        """
        Another repository is what tns says under repositories/<provider>/<id>/<P>/type.
        """
        self.tns[("repositories", "github", "7", P, "type")] = 3
        self.tns[("repositories", "github", "8", P, "type")] = 4
        self.assertIs(self.typeOf(7), RepositoryType.LIBRARY)
        self.assertIs(self.typeOf(8, provider="GitHub"), RepositoryType.WEBSITE)
        self.assertEqual(self.asked[1], ["repositories", "github", "8", P, "type"])

    def test_numbersAsTnsMayHoldThem(self):
        for value in (4.0, "4"):
            self.tns[("repositories", "github", "9", P, "type")] = value
            self.assertIs(self.typeOf(9), RepositoryType.WEBSITE)

    def test_nothingToBuild(self):
        self.assertIsNone(self.typeOf(1))

    def test_noRepository(self):
        self.assertEqual(self.failureOf(0), "the job names no repository (id 0)")
        self.assertEqual(self.failureOf(-3), "the job names no repository (id -3)")

    def test_unknown(self):
        self.assertEqual(self.failureOf(55), "repository 55 is neither the code nor the config repository of"
                                             " project QmProject, and tns has no repositories/github/55/QmProject/type")

    def test_otherValuesRefused(self):
        """
        Only the library and website types come from tns: a config or code
        type there (1, 2) or anything else is refused.
        """
        for value in (1, 2, 5, True, "web", [4]):
            self.tns[("repositories", "github", "9", P, "type")] = value
            self.assertIn("not a library (3) or website (4) repository type", self.failureOf(9))

    def test_typeKey(self):
        self.assertEqual(typeKey("GitHub", 12, P), ["repositories", "github", "12", P, "type"])
