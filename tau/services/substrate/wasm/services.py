"""
L{FunctionServices}: what the database, storage and HTTP-client host
functions reach on the node, one object per substrate, put in every
L{tau.services.substrate.wasm.context.FunctionContext} as C{services}.

Guest calls run in the runtime's worker threads; a host function that
needs the node calls L{FunctionServices.wait}, which runs a coroutine on
the reactor (C{blockingCallFromThread}) and gives up after the service's
C{opTimeout} or at the call's own deadline, whichever comes first (a host
function is not interrupted by the epoch deadline, so this bound is what
keeps a call within its timeout).

Which databases and storages a function reaches: those its own project
declares, in its application's scope first, then the project's (as
Taubyte's C{match}/C{regex} rules pick them: see L{resolve}).  Their data
lives in kvdb databases named after the project and the resource id, so a
function of another project, which can only name its own project's
resources, never reaches them.
"""

from functools import lru_cache

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.threads import blockingCallFromThread

from tau.saferegex import UnsafeRegex, compileSafe
from tau.services.substrate.wasm.database import Databases
from tau.services.substrate.wasm.egress import HttpClientPolicy, HttpFetcher
from tau.services.substrate.wasm.storage import Storages

#: the branches a resource is looked up on when the function has no commit
SERVED_BRANCHES = ("main", "master")


class NodeTimeout(Exception):
    """
    The node did not answer a host call within its time.
    """


class NotDeclared(LookupError):
    """
    The function's project (and application) declares no resource of that
    group matching the name.
    """


@lru_cache(maxsize=256)
def _safeRegex(pattern):
    """
    C{pattern} compiled, or None when L{tau.saferegex} refuses it (one
    Python's C{re} could not run in bounded time; RE2, Taubyte's engine,
    is linear).
    """
    try:
        return compileSafe(pattern) if isinstance(pattern, str) else None
    except (UnsafeRegex, RecursionError):
        return None


def matches(config, name):
    """
    Taubyte's rule: with C{useRegex}, an unanchored search of C{match} in
    C{name}; else C{match} equal to C{name}.
    """
    match = config.get("match")
    if not isinstance(match, str):
        return False
    if config.get("useRegex") is True:
        regex = _safeRegex(match)
        return regex is not None and regex.search(name) is not None
    return match == name


class FunctionServices:
    """
    What the substrate service passes (one object, made in its factory,
    put in the C{FunctionContext} of every function call)::

        FunctionServices(reactor, content, kvdb, tnsClient,
                         HttpClientPolicy.fromConfig(config["http-client-allow"]))

    @param reactor: the running reactor (C{IReactorTime}, C{IReactorTCP},
        C{IReactorFromThreads} for L{wait}, C{nameResolver} unless
        C{resolver} is given).
    @param content: the node's L{tau.interfaces.IContent} (storage files).
    @param kvdb: the node's L{tau.interfaces.IKVDB} (databases, storage
        indexes; each opened with C{serviceDatabase("substrate", ...)}).
    @param tns: has C{async fetch(path)} (a list of key segments), as
        L{tau.services.tns.client.TNSClient} (whose cache is used).
    @param httpPolicy: the L{tau.services.substrate.wasm.httpclient.HttpClientPolicy}
        of outbound HTTP (None: the default, no private address allowed).
    @param resolver: an C{IHostnameResolver} for outbound HTTP (default:
        C{reactor.nameResolver}).
    @param tlsPolicy: an C{IPolicyForHTTPS} (default: Twisted's
        C{BrowserLikePolicyForHTTPS}, the system's trust roots).

    @ivar opTimeout: seconds one host call may wait on the node, at most.
    @ivar pubsub: the substrate's
        L{tau.services.substrate.triggers.PubsubTriggers} (C{subscribe},
        C{publish}) of the pubsub host functions, or None: those answer
        their errno.  Set by the substrate once it made them.
    """

    opTimeout = 10.0

    def __init__(self, reactor, content, kvdb, tns, httpPolicy=None, *, resolver=None, tlsPolicy=None):
        self.reactor = reactor
        self.content = content
        self.kvdb = kvdb
        self.tns = tns
        self.httpPolicy = httpPolicy if httpPolicy is not None else HttpClientPolicy()
        self.databases = Databases(kvdb)
        self.storages = Storages(kvdb, content)
        self.http = HttpFetcher(reactor, self.httpPolicy, resolver=resolver, tlsPolicy=tlsPolicy)
        self.pubsub = None

    # -- from a worker thread ------------------------------------------------

    def wait(self, instance, fn, *args, timeout=None):
        """
        From a guest call's worker thread: run C{fn(*args)} (a coroutine
        function) on the reactor and return its result, waiting at most
        C{timeout} (default L{opTimeout}) seconds and never past the
        call's deadline (its start plus its function's timeout).

        @raise NodeTimeout: out of time (the coroutine is cancelled).
        """
        budget = min(self.opTimeout if timeout is None else timeout, remaining(instance))
        if budget <= 0:
            raise NodeTimeout("the call's deadline is over")

        def start():
            d = Deferred.fromCoroutine(fn(*args))
            d.addTimeout(budget, self.reactor)
            return d

        try:
            return blockingCallFromThread(self.reactor, start)
        except DeferredTimeout:
            raise NodeTimeout(f"no answer within {budget:.3f} s") from None

    # -- on the reactor ------------------------------------------------------

    async def resolve(self, context, group, name):
        """
        The resource of C{group} (C{databases}, C{storages}) that C{name}
        selects for a function in C{context}: C{(resourceId, config)}, its
        application's resources first, then its project's.

        @raise NotDeclared: none matches (or the function has no project).
        """
        if not context.project:
            raise NotDeclared("the function belongs to no project")
        tree = await self._projectTree(context)
        if not isinstance(tree, dict):
            raise NotDeclared(f"no config for project {context.project}")
        scopes = []
        if context.application:
            apps = tree.get("applications")
            app = apps.get(context.application) if isinstance(apps, dict) else None
            if isinstance(app, dict):
                scopes.append(app)
        scopes.append(tree)
        for scope in scopes:
            resources = scope.get(group)
            if not isinstance(resources, dict):
                continue
            for resourceId, config in resources.items():
                if isinstance(config, dict) and matches(config, name):
                    return resourceId, config
        raise NotDeclared(f"{name!r} matches no {group} of project {context.project}")

    async def _projectTree(self, context):
        """
        The project's config on the commit the function was found under,
        else its served branch's current commit.
        """
        if context.commit:
            return await self.tns.fetch(["branches", context.branch, "commit", context.commit, "projects", context.project])
        for branch in SERVED_BRANCHES:
            commit = await self.tns.fetch(["projects", context.project, "branches", branch, "current"])
            if isinstance(commit, str) and commit:
                return await self.tns.fetch(["branches", branch, "commit", commit, "projects", context.project])
        return None


def remaining(instance):
    """
    Seconds left of the instance's current call (its whole timeout when it
    is not in a call, as in C{_initialize}).
    """
    started = getattr(instance, "callStarted", None)
    if started is None:
        return instance.limits.timeout
    return started + instance.limits.timeout - instance.clock.seconds()
