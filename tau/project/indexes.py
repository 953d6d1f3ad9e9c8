"""
The index keys of a compiled project, as Taubyte's compiler writes them
(C{pkg/tcc/interp/index.go}, C{pkg/specs/methods}).

C{IV} (an index value) is C{branches/<br>/projects/<P>[/applications/<A>]
/<group>/<id>}.  Groups are indexed in the order functions, websites,
libraries, storages, databases, messaging, smartops, domains, each project
first and then every application; link lists are de-duplicated and keep
that order.  Services have no index.
"""

import functools
import posixpath

import base58

from tau.cids import SHA2_256, multihashOf

INDEX_ORDER = ("functions", "websites", "libraries", "storages", "databases", "messaging", "smartops", "domains")

#: repositories/<provider>/<repo>/<P>/type values (Taubyte's repositorytype).
LIBRARY_REPOSITORY = 3
WEBSITE_REPOSITORY = 4


def join(*segments):
    """
    Go's C{path.Join}: empty segments dropped, the result cleaned.
    """
    joined = "/".join(s for s in segments if s)
    return posixpath.normpath(joined) if joined else ""


@functools.lru_cache(maxsize=4096)
def multihash(text):
    """
    The base58 sha2-256 multihash of C{text} (Taubyte's C{multihash.Hash});
    the last few thousand are remembered (substrate asks for a resource's
    on every request).
    """
    return base58.b58encode(multihashOf(SHA2_256, 32, text.encode("utf-8"))).decode("ascii")


def assetKey(projectId, resourceId, branch):
    """
    The tns path of a resource's build (a function's WASM, a website's
    folder): C{assets/<multihash(P + resource + branch)>}, which build jobs
    write with the build's CID.
    """
    return ["assets", multihash(projectId + resourceId + branch)]


def reversedFqdn(fqdn):
    """
    The labels of C{fqdn}, last first, lower-cased: Taubyte keeps the case
    as written while its substrate looks hosts up lower-cased, so a domain
    written with capitals is unreachable there; DNS names are
    case-insensitive, so tau's keys are lower-case (the object keeps the
    fqdn as written).
    """
    return list(reversed(fqdn.lower().split(".")))


def indexValue(branch, projectId, appId, group, resourceId):
    if appId:
        return join("branches", branch, "projects", projectId, "applications", appId, group, resourceId)
    return join("branches", branch, "projects", projectId, group, resourceId)


def wasmLinks(projectId, appId, group, name):
    application = ("application", appId) if appId else ()
    return join("wasm", "project", projectId, *application, "modules", group, name, "links")


def namedLinks(projectId, appId, name):
    application = ("applications", appId) if appId else ()
    return join("projects", projectId, *application, name, "links")


class Indexes:
    """
    The index keys being built: C{keys} maps a key to its value, in order.
    """

    def __init__(self):
        self.keys = {}

    def link(self, key, value):
        links = self.keys.setdefault(key, [])
        if value not in links:
            links.append(value)


def build(project, apps, branch):
    """
    Every index key of the project (C{project} and C{apps} are resolved
    L{tau.project.scopes.Scope}s), and the deferred DNS validations.

    @return: C{(keys, validations)}
    """
    indexes = Indexes()
    validations = []
    projectId = project.id
    for group in INDEX_ORDER:
        for scope in [project] + apps:
            appId = scope.id if scope.app else ""
            for resource in scope.resources[group].values():
                _index(indexes, validations, project, scope, resource, branch, projectId, appId)
    return indexes.keys, validations


def _domainFqdn(project, scope, domainId):
    """
    The fqdn of the domain with that id: the scope's domains, then the project's.
    """
    for candidate in (scope, project):
        for domain in candidate.resources["domains"].values():
            if domain.id == domainId:
                return domain.wire["fqdn"]
    return None


def _index(indexes, validations, project, scope, resource, branch, projectId, appId):
    group = resource.group
    wire = resource.wire
    value = indexValue(branch, projectId, appId, group, resource.id)
    if group in ("functions", "libraries", "smartops"):
        indexes.link(wasmLinks(projectId, appId, group, resource.name), value)
    if group in ("functions", "websites"):
        for domainId in wire.get("domains", ()):
            fqdn = _domainFqdn(project, scope, domainId)
            indexes.link(join("http", group, *reversedFqdn(fqdn), "links"), value)
    if group in ("libraries", "websites"):
        repository = join("repositories", wire["provider"], wire["repository-id"], projectId)
        indexes.keys[join(repository, "type")] = LIBRARY_REPOSITORY if group == "libraries" else WEBSITE_REPOSITORY
        indexes.keys[join(repository, "resources", resource.id)] = value
    if group == "libraries":
        indexes.keys[join("libraries", resource.id)] = resource.name
    if group in ("storages", "databases"):
        indexes.link(namedLinks(projectId, appId, resource.name), value)
    if group == "messaging":
        # Every messaging resource (Taubyte's old compiler: websocket ones only).
        indexes.link(join("p2p", "pubsub", multihash(projectId + appId)), value)
    if group == "domains":
        indexes.keys.setdefault(join("domains", *reversedFqdn(wire["fqdn"]), "links"), None)
        context = {"project": projectId}
        if appId:
            context["app"] = appId
        validations.append({"key": "domain", "value": wire["fqdn"], "validator": "dns", "context": context})
