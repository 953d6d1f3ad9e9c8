"""
L{TNSClient}: what other services, the control API and tests use to read
and publish projects in tns; they never import its server code.

Fetches are cached for L{TNSClient.cacheTTL} seconds (Taubyte's 120 s) and
dropped as soon as a message comes on their C{/tns/updates/...} topic
(L{tau.services.tns.paths.updatesTopic}), which tns publishes after every
push it stores; every answer is dropped when a tns node announces on
C{/tns/updates} that its replica changed (so an answer read from a node
that had not yet merged a push does not outlive the merge).  The lookups
(L{tau.project.lookups}) run on the cached fetches.

A path tns cannot hold raises L{PathError}.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from tau.interfaces import ITNSClient
from tau.project import lookups
from tau.services.discovery import ServiceClient
from tau.services.framework import ServiceError
from tau.services.tns import PROTOCOL
from tau.services.tns.paths import CHANGED_TOPIC, PathError, checkPath, updatesTopic

__all__ = ["PathError", "TNSClient", "clientFor", "projectsOfRepository"]

log = Logger()


@implementer(ITNSClient)
class TNSClient:
    """
    @param host: the local host (streams, C{clock}), or None with C{calls}.
    @param pubsub: has C{subscribe(topic)} (cached answers are dropped on
        their updates topic), or None: nothing is cached.
    @param routing: has C{findProviders}, or None (known peers only).
    @param clock: IReactorTime.
    @param calls: what calls tns (L{ServiceClient} by default; the
        service's L{tau.services.framework.LocalCalls} on a node that
        runs tns).
    @param token: a credential sent with every call, or None for a
        trusted service of the cloud.
    """

    #: seconds a fetched answer is kept (Taubyte's client: 120)
    cacheTTL = 120.0
    #: answers kept at once, and topics listened to at once
    maxCached = 10_000
    maxTopics = 1024
    #: peers a publish tries, one after another
    attempts = 3

    def __init__(self, host, pubsub, routing, clock, *, calls=None, token=None):
        self.calls = calls or ServiceClient(host, routing, PROTOCOL)
        self.pubsub = pubsub
        self.clock = clock
        self.token = token
        self._cache = {}
        self._topics = {}
        self._generation = {}
        self._byTopic = {}
        self._answers = {}
        self._answersByTopic = {}
        self._epoch = 0

    async def _call(self, name, body, peers=None):
        if self.token is not None:
            body["token"] = self.token
        if peers is None:
            return await self.calls.call(name, body)
        return await self.calls.call(name, body, peers=peers)

    # the commands

    async def fetch(self, path):
        """
        The object at C{path} (None when absent), cached.
        """
        now = self.clock.seconds()
        if isinstance(path, list) and all(type(s) is str for s in path):
            hit = self._cache.get(tuple(path))
            if hit is not None and hit[0] > now:
                return hit[1]
        path = checkPath(path)
        key = tuple(path)
        topic = updatesTopic(path)
        cacheable = self._listen(topic)
        generation = self._generation.get(topic)
        value = (await self._call("fetch", {"path": path}))["object"]
        if cacheable and self._generation.get(topic) == generation:
            if len(self._cache) >= self.maxCached:
                self._cache.clear()
                self._byTopic.clear()
            self._cache[key] = (now + self.cacheTTL, value)
            self._byTopic.setdefault(topic, set()).add(key)
        return value

    async def push(self, path, data, *, peers=None):
        answer = await self._call("push", {"path": checkPath(path), "data": data}, peers)
        if not (answer or {}).get("pushed") is True:
            raise ServiceError(f"tns push /{'/'.join(path)}: not pushed ({answer!r})")

    async def lookup(self, prefix, regex=False):
        return (await self._call("lookup", {"prefix": list(prefix), "regex": regex}))["keys"] or []

    async def list(self, depth):
        return (await self._call("list", {"depth": depth}))["keys"]

    async def stats(self):
        return (await self._call("stats", {"action": "db"}))["stats"]

    # publishing a compiled project

    async def publish(self, compiled, commit):
        """
        Publish C{compiled} (a L{tau.project.Compiled}) as C{commit}:
        Taubyte's three pushes (indexes, object, the branch's current
        pointer), all to one tns node, so the pointer is stored after the
        config it names wherever it replicates; when a node fails, the
        three go to the next.

        @return: the peer that stored them.
        """
        candidates = await self.calls.peers()
        if not candidates:
            raise ServiceError(f"no node offers {PROTOCOL}")
        errors = []
        for peer in candidates[: self.attempts]:
            try:
                for path, data in compiled.pushes(commit):
                    await self.push(path.split("/") if path else [], data, peers=[peer])
                return peer
            except ServiceError as e:
                errors.append(str(e))
        raise ServiceError(f"{PROTOCOL} publish: no node stored it: " + "; ".join(errors))

    # lookups

    # lookups, cached as a whole: an answer is kept as long as every answer
    # it was made of is (none dropped, none expired); callers do not change
    # what they are given

    async def project(self, projectId, branch="main"):
        return await self._lookup(("project", projectId, branch), lambda f: lookups.project(f, projectId, branch))

    async def resource(self, projectId, resourceId, branch="main"):
        return await self._lookup(("resource", projectId, resourceId, branch),
                                  lambda f: lookups.resource(f, projectId, resourceId, branch))

    async def http(self, host, path, method="GET"):
        return await self._lookup(("http", host, path, method), lambda f: lookups.http(f, host, path, method))

    async def projectsServing(self, host):
        """
        The projects with a website or function on C{host} (seer asks).
        """
        return await self._lookup(("host", host), lambda f: lookups.hostProjects(f, host))

    async def currentCommit(self, projectId, branch="main"):
        return await lookups.currentCommit(self.fetch, projectId, branch)

    async def _lookup(self, key, run):
        now = self.clock.seconds()
        hit = self._answers.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        epoch = self._epoch
        topics = set()
        expires = [now + self.cacheTTL]

        async def fetch(path):
            value = await self.fetch(path)
            topics.add(updatesTopic(path))
            part = self._cache.get(tuple(path))
            expires.append(part[0] if part is not None else now)
            return value

        value = await run(fetch)
        expiry = min(expires)
        if epoch == self._epoch and expiry > now and all(t in self._topics for t in topics):
            if len(self._answers) >= self.maxCached:
                self._answers.clear()
                self._answersByTopic.clear()
            self._answers[key] = (expiry, value)
            for topic in topics:
                self._answersByTopic.setdefault(topic, set()).add(key)
        return value

    # the cache

    def _listen(self, topic):
        """
        Listen to C{topic}; whether answers under it may be cached.
        """
        if self.pubsub is None or topic is None:
            return False
        if CHANGED_TOPIC not in self._topics:
            self._subscribe(CHANGED_TOPIC)
        if topic in self._topics:
            return True
        if len(self._topics) >= self.maxTopics:
            return False
        return self._subscribe(topic)

    def _subscribe(self, topic):
        try:
            subscription = self.pubsub.subscribe(topic)
        except ValueError:
            # a topic pubsub refuses (too long): nothing under it is cached
            return False
        self._topics[topic] = subscription
        self._generation[topic] = 0
        d = Deferred.fromCoroutine(self._read(topic, subscription))
        d.addErrback(lambda f: log.failure("tns client: reading {topic} failed", f, topic=topic))
        return True

    async def _read(self, topic, subscription):
        async for _message in subscription:
            self.drop(topic)
        self._topics.pop(topic, None)
        self.drop(topic)

    def drop(self, topic):
        """
        Forget the answers cached under C{topic} (every answer for
        L{CHANGED_TOPIC}).
        """
        self._epoch += 1
        if topic == CHANGED_TOPIC:
            for other in list(self._generation):
                self._generation[other] += 1
            self._cache.clear()
            self._byTopic.clear()
            self._answers.clear()
            self._answersByTopic.clear()
            return
        self._generation[topic] = self._generation.get(topic, 0) + 1
        for key in self._byTopic.pop(topic, ()):
            self._cache.pop(key, None)
        for key in self._answersByTopic.pop(topic, ()):
            self._answers.pop(key, None)

    def close(self):
        """
        Stop listening and forget every answer.
        """
        topics, self._topics = self._topics, {}
        for subscription in topics.values():
            subscription.cancel()
        self._cache.clear()
        self._byTopic.clear()
        self._answers.clear()
        self._answersByTopic.clear()


async def projectsOfRepository(tns, repoId, provider="github"):
    """
    The projects whose compiled configs name repository C{repoId} as a
    library's or website's (tns C{repositories/<provider>/<id>/<P>/...}),
    sorted: where a push of such a repository belongs (auth knows a
    project's config and code repositories only).

    @param tns: an L{ITNSClient}.
    """
    keys = await tns.lookup(["repositories", provider, str(repoId)])
    return sorted({key.split("/")[4] for key in keys if len(key.split("/")) > 4})


def clientFor(host, pubsub, routing, clock, service=None):
    """
    A node's tns client: on C{service} (its L{TNSService}) when the node
    runs tns, else on the tns nodes found in the network.
    """
    calls = service.local() if service is not None else None
    return TNSClient(host, pubsub, routing, clock, calls=calls)
