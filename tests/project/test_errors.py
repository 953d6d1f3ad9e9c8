"""
A broken repository gives every error, each with its file, line and field,
and compiles nothing.
"""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tau.project import ProjectErrors, compileProject, loader
from tests.project.helpers import APP_ID, CONFIG, FIXTURES, IDS, ProjectTestMixin, domain, function, library, smartop, symlink, write


class EveryErrorTests(SynchronousTestCase):
    def test_brokenFixture(self):
        """
        fixtures/broken has one mistake of each kind in many files: all of
        them are reported, sorted by file and line (fixtures/broken.errors).
        """
        with self.assertRaises(ProjectErrors) as caught:
            compileProject(str(FIXTURES / "broken"))
        expected = (FIXTURES / "broken.errors").read_text().splitlines()
        self.assertEqual([str(e) for e in caught.exception.errors], expected)
        self.assertEqual(len(expected), 28)


class FieldErrorTests(ProjectTestMixin, SynchronousTestCase):
    def test_required(self):
        self.assertError({"domains/dom.yaml": f"id: {IDS[1]}\n"}, "domains/dom.yaml:1: fqdn: required attribute")

    def test_requiredAtParentLine(self):
        """
        A missing nested field is blamed on its closest present parent.
        """
        text = function().replace("  timeout: 1s\n", "")
        self.assertError({"domains/dom.yaml": domain(), "functions/f.yaml": text}, "functions/f.yaml:8: execution/timeout: required attribute")

    def test_requiredEmpty(self):
        text = function().replace("call: run", 'call: ""')
        self.assertError({"domains/dom.yaml": domain(), "functions/f.yaml": text}, "functions/f.yaml:11: execution/call: required attribute is empty")

    def test_wrongTypes(self):
        """
        A bool for a string, a scalar for a list, a scalar for a mapping, a
        quoted "true" for a bool, a mapping in a list: each a clear error.
        """
        cases = [
            ("call: run", "call: false", "functions/f.yaml:11: execution/call: has a value of the wrong type (expected a string, got a boolean)"),
            ("paths: [/]", "paths: /", 'functions/f.yaml:7: trigger/paths: has a value of the wrong type (expected a list of strings, got the scalar "/")'),
            ("paths: [/]", "paths: [{a: b}]", "functions/f.yaml:7: trigger/paths: has a value of the wrong type (expected a list of strings, got a mapping in the list)"),
            ("  timeout: 1s\n  memory: 1MB\n  call: run\n", "  - 1\n", "functions/f.yaml:9: execution: has a value of the wrong type (expected a mapping, got a list)"),
            ("method: GET", 'method: GET\n  local: "true"', 'functions/f.yaml:6: trigger/local: has a value of the wrong type (expected a boolean, got the scalar "true")'),
        ]
        for old, new, expected in cases:
            text = function().replace(old, new)
            self.assertEqual(self.errors({"domains/dom.yaml": domain(), "functions/f.yaml": text}), [expected], new)

    def test_aliasNamed(self):
        """
        A value read at an alias path is blamed on the path written.
        """
        text = function().replace("  domains: [dom]\n", "").replace("source: .", "source: .\ndomains: dom")
        self.assertError({"functions/f.yaml": text}, 'functions/f.yaml:3: domains: has a value of the wrong type (expected a list of strings, got the scalar "dom")')

    def test_values(self):
        """
        Each value check, with Taubyte's words where it has them.
        """
        cases = [
            ("type: https", "type: grpc", 'functions/f.yaml:4: trigger/type: invalid value "grpc" (one of http, https, pubsub, p2p)'),
            ("method: GET", "method: FETCH", 'functions/f.yaml:5: trigger/method: invalid http method "FETCH" (one of GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH, any case)'),
            ("source: .", "source: src", 'functions/f.yaml:2: source: must be "." or start with "libraries/", got "src"'),
            ("timeout: 1s", "timeout: 1", 'functions/f.yaml:9: execution/timeout: invalid duration "1": time: missing unit in duration "1"'),
            ("timeout: 1s", "timeout: -1s", 'functions/f.yaml:9: execution/timeout: invalid duration "-1s": must not be negative'),
            ("memory: 1MB", "memory: 1mb", 'functions/f.yaml:10: execution/memory: invalid size "1mb": units: unknown unit mb in 1mb'),
            (f"id: {IDS[0]}", "id: Qm", "functions/f.yaml:1: id: failed parsing `Qm` as a CID: multihash must be greater than 3 bytes."),
            ("source: .", "source: .\nname: 1st", "functions/f.yaml:3: name: invalid variable name (letters, digits and _, not starting with a digit)"),
        ]
        for old, new, expected in cases:
            text = function().replace(old, new, 1)
            self.assertEqual(self.errors({"domains/dom.yaml": domain(), "functions/f.yaml": text}), [expected], new)

    def test_cid(self):
        """
        A 46-character Qm... id must be a base58 sha2-256 multihash; other
        ids parse as multibase CIDv1.
        """
        bad = "Qm" + "0" * 44
        self.assertError({"domains/dom.yaml": domain(bad)}, f"domains/dom.yaml:1: id: failed parsing `{bad}` as a CID: not a base58 sha2-256 multihash")
        cidV1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        self.assertEqual(list(self.compiled({"domains/dom.yaml": domain(cidV1)}).object["domains"]), [cidV1])

    def test_fqdn(self):
        self.assertError({"domains/dom.yaml": domain(fqdn="a..b")}, "domains/dom.yaml:2: fqdn: invalid fqdn")
        self.assertError({"domains/dom.yaml": domain(fqdn="1.2.3.4")}, "domains/dom.yaml:2: fqdn: invalid fqdn")
        # Go's rules: _ is fine, a 63-byte label is, 64 bytes is not.
        self.compiled({"domains/dom.yaml": domain(fqdn="_dmarc." + "a" * 63 + ".example.com")})
        self.assertError({"domains/dom.yaml": domain(fqdn="a" * 64 + ".example.com")}, "domains/dom.yaml:2: fqdn: invalid fqdn")

    def test_email(self):
        self.assertError({"config.yaml": CONFIG + "notification: {email: nobody}\n"}, "config.yaml:2: notification/email: mail: missing '@' or angle-addr")
        self.compiled({"config.yaml": CONFIG + "notification: {email: '\"Ops\" <ops@example.com>'}\n"})

    def test_namesStayInTheirKeys(self):
        """
        Names and repository ids become tns key segments: a name with a /
        or named .. (both possible inline in config.yaml; files named so are
        hidden, so never read), a repository id with a / are refused, so nothing writes outside the
        project's keys.
        """
        config = f"id: {IDS[9]}\ndatabases:\n  ../../x:\n    id: {IDS[5]}\n    match: m\n    storage: {{size: 1MB}}\n"
        self.assertEqual(self.errors({"config.yaml": config}), ['config.yaml:3: name: the resource\'s name "../../x" cannot be part of a key (no /, not . or ..)'])
        config = f"id: {IDS[9]}\ndomains:\n  '..': {{id: {IDS[1]}, fqdn: a.example.com}}\n"
        self.assertEqual(self.errors({"config.yaml": config}), ['config.yaml:3: name: the resource\'s name ".." cannot be part of a key (no /, not . or ..)'])
        self.assertEqual(
            self.errors({"libraries/l.yaml": f"id: {IDS[3]}\nsource: {{github: {{id: ../../x, fullname: a/b}}}}\n"}),
            ['libraries/l.yaml:2: source/github/id: "../../x" cannot be part of a key (no /, not . or ..)'],
        )

    def test_requiredWhen(self):
        """
        pubsub needs a channel, p2p a protocol and a command, an inline
        certificate its cert and key; http(s) its method, domains, paths.
        """
        base = f"id: {IDS[0]}\nsource: .\nexecution: {{timeout: 1s, memory: 1MB, call: c}}\ntrigger: {{type: %s}}\n"
        self.assertEqual(self.errors({"functions/f.yaml": base % "pubsub"}), ["functions/f.yaml:4: trigger/channel: required attribute"])
        self.assertEqual(
            self.errors({"functions/f.yaml": base % "p2p"}),
            ["functions/f.yaml:4: trigger/command: required attribute", "functions/f.yaml:4: trigger/protocol: required attribute"],
        )
        self.assertEqual(
            self.errors({"functions/f.yaml": base % "http"}),
            [
                "functions/f.yaml:4: trigger/domains: required attribute",
                "functions/f.yaml:4: trigger/method: required attribute",
                "functions/f.yaml:4: trigger/paths: required attribute",
            ],
        )
        self.assertEqual(
            self.errors({"domains/dom.yaml": domain() + "certificate: {type: inline}\n"}),
            ["domains/dom.yaml:3: certificate/cert: required attribute", "domains/dom.yaml:3: certificate/key: required attribute"],
        )

    def test_databaseMatchUnlessRegex(self):
        db = f"id: {IDS[5]}\nstorage: {{size: 1MB}}\n"
        self.assertError({"databases/db.yaml": db}, "databases/db.yaml:1: match: required attribute")
        self.compiled({"databases/db.yaml": db + "regex: true\n"})
        self.compiled({"databases/db.yaml": db + "useRegex: true\n"})

    def test_storageBlocks(self):
        self.assertError({"storages/s.yaml": f"id: {IDS[6]}\n"}, "storages/s.yaml:1: object: required attribute (a storage needs an object: or a streaming: block)")
        both = f"id: {IDS[6]}\nobject: {{size: 1MB}}\nstreaming: {{size: 1MB}}\n"
        self.assertError({"storages/s.yaml": both}, "storages/s.yaml:3: streaming: a storage has an object: block or a streaming: block, not both")
        self.assertError({"storages/s.yaml": f"id: {IDS[6]}\nstreaming: {{ttl: 1h}}\n"}, "storages/s.yaml:2: streaming/size: required attribute")

    def test_githubBlock(self):
        self.assertError({"libraries/l.yaml": f"id: {IDS[3]}\nsource: {{branch: main}}\n"}, "libraries/l.yaml:2: source/github: required attribute (the repository's git provider block)")
        self.assertError({"libraries/l.yaml": f"id: {IDS[3]}\nsource: {{github: {{id: 1}}}}\n"}, "libraries/l.yaml:2: source/github/fullname: required attribute")

    def test_cloudIncomplete(self):
        config = CONFIG + "clouds:\n  net.example: {account: a}\n"
        self.assertEqual(
            self.errors({"config.yaml": config}, cloud="net.example"),
            ["config.yaml:3: clouds/net.example: is incomplete; fields account and plan must all be set or all omitted"],
        )
        # Only the network compiled for is checked, as Taubyte does.
        self.compiled({"config.yaml": config}, cloud="other.example")
        self.assertEqual(
            self.errors({"clouds/net.example.yaml": "plan: gold\n"}, cloud="net.example"),
            ["clouds/net.example.yaml:1: clouds/net.example: is incomplete; fields account and plan must all be set or all omitted"],
        )


class ReferenceErrorTests(ProjectTestMixin, SynchronousTestCase):
    def test_unknownNames(self):
        files = {"functions/f.yaml": function().replace("source: .", "source: libraries/nolib") + "tags: ['smartops:noop', plain]\n"}
        self.assertEqual(
            self.errors(files),
            [
                "functions/f.yaml:2: source: no library named 'nolib' in the project",
                "functions/f.yaml:6: trigger/domains: no domain named 'dom' in the project",
                "functions/f.yaml:12: tags: no smartop named 'noop' in the project",
            ],
        )

    def test_projectCannotSeeApplications(self):
        files = {
            "applications/app/config.yaml": f"id: {APP_ID}\n",
            "applications/app/domains/dom.yaml": domain(),
            "functions/f.yaml": function(IDS[0]),
        }
        self.assertError(files, "functions/f.yaml:6: trigger/domains: no domain named 'dom' in the project")

    def test_siblingsInvisible(self):
        files = {
            "applications/a/config.yaml": f"id: {APP_ID}\n",
            "applications/a/domains/dom.yaml": domain(),
            "applications/b/config.yaml": f"id: {IDS[9]}\n",
            "applications/b/functions/f.yaml": function(IDS[0]),
        }
        self.assertError(files, "applications/b/functions/f.yaml:6: trigger/domains: no domain named 'dom' in application b or the project")

    def test_absoluteSkipsApplication(self):
        """
        /name is the project's only, even when the application has one.
        """
        files = {
            "applications/a/config.yaml": f"id: {APP_ID}\n",
            "applications/a/domains/dom.yaml": domain(),
            "applications/a/functions/f.yaml": function(IDS[0]).replace("[dom]", "[/dom]"),
        }
        self.assertError(files, "applications/a/functions/f.yaml:6: trigger/domains: no domain named 'dom' in the project")

    def test_climbAboveRoot(self):
        """
        ../ from an application is the project; from the project, or ../../
        from an application, climbs above the root.
        """
        files = {"domains/dom.yaml": domain(), "functions/f.yaml": function().replace("[dom]", "[../dom]")}
        self.assertError(files, "functions/f.yaml:6: trigger/domains: reference scope '../dom' climbs above the project root")
        files = {
            "domains/dom.yaml": domain(),
            "applications/a/config.yaml": f"id: {APP_ID}\n",
            "applications/a/functions/f.yaml": function(IDS[0]).replace("[dom]", "[../dom, ../../dom]"),
        }
        self.assertError(files, "applications/a/functions/f.yaml:6: trigger/domains: reference scope '../../dom' climbs above the project root")

    def test_duplicateIds(self):
        """
        An id twice in one group of one scope is refused; the same id in
        two groups, or in the project and an application, is fine (as in
        Taubyte's own test project).
        """
        files = {"domains/a.yaml": domain(IDS[1], "a.example.com"), "domains/b.yaml": domain(IDS[1], "b.example.com"), "services/s.yaml": f"id: {IDS[1]}\nprotocol: /p\n"}
        self.assertError(files, f"domains/b.yaml:1: id: id {IDS[1]} is already used by domains/a (domains/a.yaml:1)")
        files = {
            "domains/a.yaml": domain(IDS[1], "a.example.com"),
            "applications/x/config.yaml": f"id: {APP_ID}\n",
            "applications/x/domains/a.yaml": domain(IDS[1], "a.example.com"),
            "applications/y/config.yaml": f"id: {APP_ID}\n",
        }
        self.assertEqual(
            self.errors(files),
            [f"applications/y/config.yaml:1: id: id {APP_ID} is already used by application x (applications/x/config.yaml)"],
        )

    def test_cycles(self):
        """
        A library guarded by a smartop built from it, directly or through
        another library, is a cyclic reference; a smartop built from a
        library that guards something else is not.
        """
        files = {"libraries/a.yaml": library(IDS[3], "tags: ['smartops:op']\n"), "smartops/op.yaml": smartop(source="libraries/a")}
        self.assertError(files, "libraries/a.yaml:4: tags: cyclic reference: libraries/a -> smartops/op -> libraries/a")
        files = {
            "libraries/a.yaml": library(IDS[3], "tags: ['smartops:opb']\n"),
            "libraries/b.yaml": library(IDS[5], "tags: ['smartops:opa']\n"),
            "smartops/opa.yaml": smartop(IDS[4], "libraries/a"),
            "smartops/opb.yaml": smartop(IDS[6], "libraries/b"),
        }
        self.assertError(files, "libraries/a.yaml:4: tags: cyclic reference: libraries/a -> smartops/opb -> libraries/b -> smartops/opa -> libraries/a")
        files = {
            "libraries/a.yaml": library(IDS[3], "tags: ['smartops:opb']\n"),
            "libraries/b.yaml": library(IDS[5]),
            "smartops/opb.yaml": smartop(IDS[6], "libraries/b"),
        }
        self.compiled(files)

    def test_longChain(self):
        """
        A chain of 1,200 libraries each guarded by a smartop built from the
        next is walked without exhausting the stack, and its closing link
        found.
        """
        count = 1200
        files = {}
        for i in range(count):
            files[f"libraries/l{i}.yaml"] = f"id: {_cid(f'l{i}')}\ntags: ['smartops:o{i}']\nsource: {{github: {{id: {i}, fullname: a/b}}}}\n"
            files[f"smartops/o{i}.yaml"] = f"id: {_cid(f'o{i}')}\nsource: libraries/l{(i + 1) % count}\nexecution: {{timeout: 1s, memory: 1MB, call: c}}\n"
        [error] = self.errors(files)
        self.assertIn("tags: cyclic reference: libraries/l0 -> smartops/o0 -> libraries/l1", error)


def _cid(text):
    from tau.project.indexes import multihash

    return multihash(text)


class FileErrorTests(ProjectTestMixin, SynchronousTestCase):
    def test_yaml(self):
        files = {
            "functions/a.yaml": "a: [\n",
            "functions/b.yaml": "a: 1\nb: 2\na: 3\n",
            "functions/c.yaml": "a: &x [*x]\n",
            "functions/d.yaml": "- 1\n",
            "functions/e.yaml": "",
            "functions/f.yaml": b"id: \xff\n",
            "functions/g.yaml": "a: 1\n---\nb: 2\n",
        }
        self.assertEqual(
            self.errors(files),
            [
                "functions/a.yaml:2: yaml: YAML syntax error: while parsing a flow node did not find expected node content",
                "functions/b.yaml:3: yaml: YAML key 'a' already defined at line 1",
                "functions/c.yaml:1: yaml: YAML alias refers to itself (a cyclic reference)",
                "functions/d.yaml:1: document: must be a YAML mapping",
                "functions/e.yaml:1: document: is empty (a resource needs at least an id)",
                "functions/f.yaml:1: yaml: is not UTF-8 text",
                "functions/g.yaml:2: yaml: YAML syntax error: expected a single document in the stream but found another document",
            ],
        )

    def test_layout(self):
        """
        Unknown resource kinds, stray YAML files, .yml files, sub-folders of
        a group and missing config.yaml files are reported; hidden folders
        and folders without YAML are not.
        """
        files = {
            "lambdas/x.yaml": "a: 1\n",
            "stray.yaml": "a: 1\n",
            "functions/x.yml": "a: 1\n",
            "functions/sub/x.yaml": "a: 1\n",
            "functions/config.yaml": "not: a resource\n",
            "applications/app/functions/README.md": "",
            "applications/notes.yaml": "a: 1\n",
            ".github/workflows/ci.yaml": "a: 1\n",
            "docs/index.md": "",
        }
        self.assertEqual(
            self.errors(files),
            [
                "applications/app/config.yaml:1: id: required attribute (config.yaml is missing)",
                "applications/notes.yaml:1: file: is not read: applications/ holds one folder per application",
                "functions/sub:1: kind: folders inside a resource folder are not read",
                "functions/x.yml:1: file: is not read: resource files end in .yaml",
                "lambdas:1: kind: unknown resource kind 'lambdas' (known: databases, domains, functions, libraries, messaging, services, smartops, storages, websites, applications)",
                "stray.yaml:1: file: is not read: a level holds only config.yaml and resource folders",
            ],
        )

    def test_applicationKinds(self):
        """
        applications/ inside an application is no resource kind.
        """
        files = {"applications/a/config.yaml": f"id: {APP_ID}\n", "applications/a/applications/b/config.yaml": f"id: {IDS[0]}\n"}
        self.assertError(files, "applications/a/applications:1: kind: unknown resource kind 'applications' (known: databases, domains, functions, libraries, messaging, services, smartops, storages, websites)")

    def test_missingProjectConfig(self):
        self.assertError({"config.yaml": None}, "config.yaml:1: id: required attribute (config.yaml is missing)")
        self.assertError({"config.yaml": ""}, "config.yaml:1: id: required attribute (config.yaml is empty)")

    def test_symlinks(self):
        """
        A symbolic link is not followed (a repository reads nothing outside
        itself).
        """
        root = Path(write(self.mktemp(), {"domains/dom.yaml": domain()}))
        outside = Path(self.mktemp())
        outside.write_text(domain(IDS[2], "b.example.com"))
        symlink(outside.resolve(), root / "domains" / "evil.yaml")
        with self.assertRaises(ProjectErrors) as caught:
            compileProject(str(root))
        self.assertEqual([str(e) for e in caught.exception.errors], ["domains/evil.yaml:1: file: is a symbolic link; links are not followed"])

    def test_symlinksOutsideResourcesIgnored(self):
        """
        A link in a folder that holds no resources (docs, assets) is none of
        the compiler's business.
        """
        root = Path(write(self.mktemp(), {"docs/index.md": ""}))
        symlink("/etc/hostname", root / "docs" / "host.yaml")
        compileProject(str(root))

    def test_fileSizeLimit(self):
        """
        A YAML file of exactly MAX_FILE_SIZE bytes is read; one byte more is
        refused for its size.
        """
        body = domain().encode()
        padding = loader.MAX_FILE_SIZE - len(body) - 2
        exact = body + b"#" + b"x" * padding + b"\n"
        self.assertEqual(len(exact), loader.MAX_FILE_SIZE)
        self.compiled({"domains/dom.yaml": exact})
        self.assertError({"domains/dom.yaml": exact + b"\n"}, f"domains/dom.yaml:1: file: is larger than {loader.MAX_FILE_SIZE} bytes")

    def test_fileCountLimit(self):
        """
        At most MAX_FILES YAML files are read; past that, one error.
        """
        self.patch(loader, "MAX_FILES", 3)
        files = {f"domains/d{i}.yaml": domain(IDS[i], f"d{i}.example.com") for i in range(2)}
        self.compiled(files)
        files["domains/d2.yaml"] = domain(IDS[2], "d2.example.com")
        self.assertError(files, "domains/d2.yaml:1: file: too many YAML files (at most 3)")

    def test_notAFolder(self):
        missing = self.mktemp()
        with self.assertRaises(ProjectErrors) as caught:
            compileProject(missing)
        self.assertEqual([str(e) for e in caught.exception.errors], [f".:1: folder: {missing} is not a folder"])


