"""
Compiled trees: the spec sheet's worked example, every kind and field, the
scope rules, notation, and the tns pushes.
"""

import json

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tau.project import compileInThread, compileProject
from tau.project.tree import leaves
from tests.project.helpers import APP_ID, FIXTURES, IDS, PROJECT_ID, ProjectTestMixin, domain, function, library, smartop

P = "QmQnBpGSSrWLdp3GGKkeqQZ5C1Ce55NSgDiKJhC9Wver7A"
F = "QmWUtSj62Xpc9MhEutPmmjZ2aWQGMJBhopQMuHNxnSvt4M"
D = "QmehDMFsPNpKna8Wb2QSvCHSPmE7puDfJqWAryg1rsDi7y"
L = "QmafPNqLNJV9pdJtB2HN2r5K41WCUvSkmvmAyTJ6PzGC83"
S = "QmQX3hTzA4dWt9huKiV8XKr5qugxc2fpjEXCvUGqnoFG6E"
A = "QmZCstKkwsL212pMaf4xk4V5AbgVfJC2NNSJdu8UZtqSpS"
B = "QmRvfVD2rvWewxhzEFM4QHdyeBe4BCEPYXsdYqYWsUQoqy"


class WorkedExampleTests(SynchronousTestCase):
    """
    The spec sheet's worked example (fixtures/shopfront), key by key.
    """

    def setUp(self):
        self.compiled = compileProject(str(FIXTURES / "shopfront"))

    def test_object(self):
        o = self.compiled.object
        self.assertEqual((o["id"], o["name"], o["email"]), (P, "shopfront", "ops@shopfront.example"))
        self.assertEqual(
            o["functions"][F],
            {
                "name": "get_items",
                "tags": ["smartops:guard"],
                "type": "https",
                "secure": True,
                "method": "GET",
                "domains": [D],
                "paths": ["/items"],
                "source": ".",
                "timeout": 5_000_000_000,
                "memory": 16_000_000,
                "call": "handle",
                "smartops": [S],
            },
        )
        self.assertEqual(o["domains"][D], {"name": "main_dom", "fqdn": "api.shopfront.example", "cert-type": "auto"})
        self.assertEqual(
            o["libraries"][L],
            {"name": "shared", "branch": "main", "path": "/", "provider": "github", "repository-id": "4242", "repository-name": "acme/shared-lib"},
        )
        self.assertEqual(o["smartops"][S], {"name": "guard", "source": f"libraries/{L}", "timeout": 1_000_000_000, "memory": 8_000_000, "call": "check"})
        self.assertEqual(o["applications"][A], {"name": "backoffice", "databases": {B: {"name": "carts", "match": "carts", "local": True, "size": 1_000_000_000}}})

    def test_indexes(self):
        iv = f"branches/main/projects/{P}/functions/{F}"
        self.assertEqual(
            self.compiled.indexes,
            {
                f"wasm/project/{P}/modules/functions/get_items/links": [iv],
                "http/functions/example/shopfront/api/links": [iv],
                f"wasm/project/{P}/modules/libraries/shared/links": [f"branches/main/projects/{P}/libraries/{L}"],
                f"repositories/github/4242/{P}/type": 3,
                f"repositories/github/4242/{P}/resources/{L}": f"branches/main/projects/{P}/libraries/{L}",
                f"libraries/{L}": "shared",
                f"projects/{P}/applications/{A}/carts/links": [f"branches/main/projects/{P}/applications/{A}/databases/{B}"],
                f"wasm/project/{P}/modules/smartops/guard/links": [f"branches/main/projects/{P}/smartops/{S}"],
                "domains/example/shopfront/api/links": None,
            },
        )

    def test_validations(self):
        self.assertEqual(
            self.compiled.validations,
            [
                {"key": "project_id", "value": P, "validator": "project_id", "context": {}},
                {"key": "domain", "value": "api.shopfront.example", "validator": "dns", "context": {"project": P}},
            ],
        )

    def test_pushes(self):
        """
        Three pushes in order: the indexes at the root, the object under the
        commit, then the branch's current-commit pointer (last leaf).
        """
        pushes = self.compiled.pushes("c0ffee")
        self.assertEqual([path for path, _ in pushes], ["", f"branches/main/commit/c0ffee/projects/{P}", f"projects/{P}/branches/main/current"])
        allLeaves = [leaf for path, value in pushes for leaf in leaves(path, value)]
        self.assertIn((f"branches/main/commit/c0ffee/projects/{P}/functions/{F}/timeout", 5_000_000_000), allLeaves)
        self.assertIn((f"branches/main/commit/c0ffee/projects/{P}/functions/{F}/paths", ["/items"]), allLeaves)
        self.assertIn(("domains/example/shopfront/api/links", None), allLeaves)
        self.assertEqual(allLeaves[-1], (f"projects/{P}/branches/main/current/current", "c0ffee"))
        self.assertEqual(len([k for k, _ in allLeaves if not k.startswith(("branches/", "projects/" + P + "/branches"))]), len(self.compiled.indexes))

    def test_branch(self):
        """
        Index values name the branch compiled for.
        """
        compiled = compileProject(str(FIXTURES / "shopfront"), branch="dev")
        self.assertEqual(compiled.indexes[f"libraries/{L}"], "shared")
        self.assertEqual(compiled.indexes[f"wasm/project/{P}/modules/functions/get_items/links"], [f"branches/dev/projects/{P}/functions/{F}"])


class FullFixtureTests(SynchronousTestCase):
    def test_everyKind(self):
        """
        fixtures/full (every kind with every field, aliases, defaults and
        units, two applications, a cloud) compiles to fixtures/full.json.
        """
        compiled = compileProject(str(FIXTURES / "full"), cloud="net.example")
        expected = json.loads((FIXTURES / "full.json").read_text())
        self.assertEqual(compiled.asJSON(), expected)
        # Key order of the indexes is Taubyte's publishing order.
        self.assertEqual(list(compiled.indexes), list(expected["indexes"]))

    def test_cloudDropped(self):
        """
        Without a cloud the clouds: map gives no account or plan.
        """
        o = compileProject(str(FIXTURES / "full")).object
        self.assertNotIn("account", o)
        self.assertNotIn("plan", o)
        self.assertNotIn("clouds", o)
        self.assertNotIn("tags", o)


class RulesTests(ProjectTestMixin, SynchronousTestCase):
    def test_cloudsFolder(self):
        """
        clouds/<fqdn>.yaml gives the project's account and plan too, and
        wins over config.yaml's clouds: map.
        """
        files = {
            "config.yaml": f"id: {PROJECT_ID}\nclouds: {{net.example: {{account: inline, plan: x}}}}\n",
            "clouds/net.example.yaml": "account: acct\nplan: gold\n",
        }
        o = self.compiled(files, cloud="net.example").object
        self.assertEqual((o["account"], o["plan"]), ("acct", "gold"))
        self.assertNotIn("account", self.compiled(files, cloud="other.example").object)

    def test_nameIsTheFileName(self):
        """
        The file's base name is the compiled name; a YAML name is checked,
        then replaced.
        """
        o = self.compiled({"domains/dom.yaml": domain() + "name: other\n"}).object
        self.assertEqual(o["domains"][IDS[1]]["name"], "dom")

    def test_projectNameKept(self):
        o = self.compiled({"config.yaml": f"id: {PROJECT_ID}\nname: written\n"}).object
        self.assertEqual(o["name"], "written")

    def test_triggerKinds(self):
        """
        secure only for http/https; service only for p2p (from protocol or
        its alias service); method kept as written.
        """
        files = {
            "domains/dom.yaml": domain(),
            "functions/h.yaml": function(IDS[0]).replace("type: https", "type: http").replace("GET", "get"),
            "functions/p.yaml": f"id: {IDS[2]}\nsource: .\ntrigger: {{type: p2p, protocol: /x/v1, command: c}}\nexecution: {{timeout: 1s, memory: 1MB, call: c}}\n",
            "functions/q.yaml": f"id: {IDS[3]}\nsource: .\ntrigger: {{type: pubsub, channel: c, protocol: /ignored}}\nexecution: {{timeout: 1s, memory: 1MB, call: c}}\n",
        }
        functions = self.compiled(files).object["functions"]
        self.assertEqual((functions[IDS[0]]["secure"], functions[IDS[0]]["method"]), (False, "get"))
        self.assertEqual(functions[IDS[2]]["service"], "/x/v1")
        self.assertNotIn("secure", functions[IDS[2]])
        self.assertNotIn("service", functions[IDS[3]])
        self.assertNotIn("secure", functions[IDS[3]])

    def test_numbersForStrings(self):
        """
        A number where a string is declared is its decimal text (an unquoted
        repository id), read as Go's yaml.v3 reads numbers; YAML 1.1 words
        and dates are strings in string fields.
        """
        cases = {"4242": "4242", "0x10": "16", "0o17": "15", "017": "15", "0b101": "5", "1_000": "1000", "-7": "-7", "1.50": "1.5", "1e3": "1000", "yes": "yes", "2024-01-01": "2024-01-01"}
        for written, text in cases.items():
            files = {"libraries/lib.yaml": f"id: {IDS[3]}\nsource:\n  branch: {written}\n  github: {{id: {written}, fullname: acme/lib}}\n"}
            lib = self.compiled(files).object["libraries"][IDS[3]]
            self.assertEqual((lib["repository-id"], lib["branch"]), (text, text), written)

    def test_boolWords(self):
        """
        A bool field takes YAML booleans and yes/no/on/off written plain.
        """
        files = {"messaging/m.yaml": f"id: {IDS[7]}\nlocal: off\nchannel: {{match: m, regex: True}}\nbridges: {{mqtt: {{enable: on}}}}\n"}
        m = self.compiled(files).object["messaging"][IDS[7]]
        self.assertEqual((m["local"], m["regex"], m["mqtt"]), (False, True, True))

    def test_fqdnIndexedLowerCase(self):
        """
        A domain written with capitals is indexed lower-cased, as hosts are
        looked up (Taubyte keeps the case in its keys, so such a domain is
        unreachable there); the object keeps the fqdn as written.
        """
        files = {"domains/dom.yaml": domain(fqdn="Api.Example.com"), "functions/f.yaml": function()}
        compiled = self.compiled(files)
        self.assertIn("domains/com/example/api/links", compiled.indexes)
        self.assertIn("http/functions/com/example/api/links", compiled.indexes)
        self.assertEqual(compiled.object["domains"][IDS[1]]["fqdn"], "Api.Example.com")

    def test_inlineGroups(self):
        """
        A group written inside config.yaml is read when its folder is absent.
        """
        config = f"id: {PROJECT_ID}\ndomains:\n  dom:\n    id: {IDS[1]}\n    fqdn: a.example.com\n"
        compiled = self.compiled({"config.yaml": config, "functions/f.yaml": function()})
        self.assertEqual(compiled.object["functions"][IDS[0]]["domains"], [IDS[1]])
        self.assertEqual(compiled.object["domains"][IDS[1]]["name"], "dom")

    def test_folderWinsOverInline(self):
        config = f"id: {PROJECT_ID}\ndomains:\n  other:\n    id: {IDS[2]}\n    fqdn: b.example.com\n"
        o = self.compiled({"config.yaml": config, "domains/dom.yaml": domain()}).object
        self.assertEqual(list(o["domains"]), [IDS[1]])

    def test_appFallsBackToProject(self):
        """
        From an application a plain name is looked up there, then in the
        project; /name is the project's; ../name the parent's.
        """
        files = {
            "domains/dom.yaml": domain(IDS[1], "p.example.com"),
            "libraries/lib.yaml": library(),
            "smartops/op.yaml": smartop(),
            "applications/app/config.yaml": f"id: {APP_ID}\n",
            "applications/app/domains/dom.yaml": domain(IDS[2], "a.example.com"),
            "applications/app/functions/f.yaml": function(IDS[0]).replace("[dom]", "[dom, /dom]").replace("source: .", "source: libraries/../lib") + "tags: ['smartops:op']\n",
        }
        f = self.compiled(files).object["applications"][APP_ID]["functions"][IDS[0]]
        self.assertEqual(f["domains"], [IDS[2], IDS[1]])
        self.assertEqual(f["source"], f"libraries/{IDS[3]}")
        self.assertEqual(f["smartops"], [IDS[4]])

    def test_smartopsNotAttachedToSmartops(self):
        files = {"smartops/op.yaml": smartop() + "tags: ['smartops:op']\n"}
        self.assertNotIn("smartops", self.compiled(files).object["smartops"][IDS[4]])

    def test_databaseNetwork(self):
        """
        access.network: local is true only for host; the key stays only for
        subnet; default all.
        """
        files = {
            f"databases/{name}.yaml": f"id: {IDS[i]}\nmatch: m\nstorage: {{size: 1MB}}\n" + (f"access: {{network: {name}}}\n" if name != "none" else "")
            for i, name in enumerate(["all", "subnet", "host", "none"])
        }
        dbs = self.compiled(files).object["databases"]
        self.assertEqual([(dbs[IDS[i]]["local"], dbs[IDS[i]].get("network-access")) for i in range(4)], [(False, None), (False, "subnet"), (True, None), (False, None)])

    def test_storagePublic(self):
        files = {
            f"storages/{name}.yaml": f"id: {IDS[i]}\nstreaming: {{size: 1MB, ttl: 1m}}\n" + (f"access: {{network: {name}}}\n" if name != "none" else "")
            for i, name in enumerate(["all", "subnet", "host", "none"])
        }
        storages = self.compiled(files).object["storages"]
        self.assertEqual([storages[IDS[i]]["public"] for i in range(4)], [True, False, False, True])
        self.assertEqual(storages[IDS[0]]["ttl"], 60_000_000_000)
        self.assertNotIn("network-access", storages[IDS[1]])

    def test_everyMessagingIndexed(self):
        """
        Every messaging resource is linked under p2p/pubsub/<mh(P+A)>, not
        only websocket ones (Taubyte's old compiler).
        """
        compiled = self.compiled({"messaging/m.yaml": f"id: {IDS[7]}\nchannel: {{match: m}}\n"})
        [key] = [k for k in compiled.indexes if k.startswith("p2p/pubsub/")]
        self.assertEqual(compiled.indexes[key], [f"branches/main/projects/{PROJECT_ID}/messaging/{IDS[7]}"])

    def test_servicesNoIndex(self):
        compiled = self.compiled({"services/s.yaml": f"id: {IDS[8]}\nprotocol: /s/v1\n"})
        self.assertEqual(compiled.indexes, {})
        self.assertEqual(compiled.object["services"][IDS[8]], {"name": "s", "protocol": "/s/v1"})

    def test_indexKeyPrefixOfAnother(self):
        """
        A domain whose links key is a prefix of another's (example.com and
        links.example.com) publishes both keys.
        """
        files = {"domains/a.yaml": domain(IDS[1], "example.com"), "domains/b.yaml": domain(IDS[2], "links.example.com")}
        [indexes, _, _] = self.compiled(files).pushes("c0ffee")
        keys = [key for key, _ in leaves(*indexes)]
        self.assertEqual(keys, ["domains/com/example/links", "domains/com/example/links/links"])

    def test_linksDeduplicated(self):
        """
        A function listing one domain twice is linked once.
        """
        files = {"domains/dom.yaml": domain(), "functions/f.yaml": function().replace("[dom]", "[dom, dom]")}
        compiled = self.compiled(files)
        self.assertEqual(len(compiled.indexes["http/functions/com/example/api/links"]), 1)
        self.assertEqual(compiled.object["functions"][IDS[0]]["domains"], [IDS[1], IDS[1]])

    def test_yamlAliasesAndMerges(self):
        """
        Anchors, aliases and merge keys are followed.
        """
        files = {
            "domains/dom.yaml": domain(),
            "functions/f.yaml": f"id: {IDS[0]}\nsource: .\ntrigger: {{type: https, method: GET, domains: &d [dom], paths: *d}}\nlimits: &l {{timeout: 2s, memory: 1MB}}\nexecution:\n  <<: *l\n  call: run\n",
        }
        f = self.compiled(files).object["functions"][IDS[0]]
        self.assertEqual((f["paths"], f["timeout"]), (["dom"], 2_000_000_000))


class _InlinePool:
    """
    A thread pool that runs work at once, recording that it did.
    """

    def __init__(self):
        self.calls = 0

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.calls += 1
        try:
            result = f(*args, **kwargs)
        except BaseException as e:
            onResult(False, Failure(e))
        else:
            onResult(True, result)


class _PoolReactor:
    def __init__(self):
        self.pool = _InlinePool()

    def getThreadPool(self):
        return self.pool

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class ThreadTests(SynchronousTestCase):
    def test_compileInThread(self):
        """
        compileInThread runs the compile in the reactor's thread pool (not
        the reactor thread) and gives its result.
        """
        reactor = _PoolReactor()
        d = Deferred.fromCoroutine(compileInThread(reactor, str(FIXTURES / "shopfront")))
        self.assertEqual(self.successResultOf(d).projectId, P)
        self.assertEqual(reactor.pool.calls, 1)

