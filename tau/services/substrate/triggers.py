"""
The substrate's non-HTTP triggers, as a library the substrate service
wires: L{PubsubTriggers} (functions run for pubsub messages) and
L{P2PTriggers} (functions that answer C{substrate-p2p} commands).  Both
find functions in a project's current config through a tns C{fetch}
(L{tau.project.lookups}) and leave running them to a C{run} callable,
so they know nothing of the runtime.

A function is handed to C{run} as C{{project, application (None at
project level), group, id, branch, commit, config}} (what
L{tau.project.lookups.resource} answers).

Pubsub, as Taubyte's substrate (C{components/pubsub}) does it:

  - the topic of a channel is C{<mh(project + application)>/<channel>}
    (one leading C{/} of the channel dropped): L{topicOf};
  - a message on it is the CBOR envelope C{{"0": seq, "1": source
    resource, "2": data}} (L{encodeEnvelope}); a function gets the data
    and the topic;
  - the functions a message on channel C{c} runs: the messaging
    resources of the project (and of the application, when there is one)
    whose C{match} equals C{c} or, with C{regex}, is found in it; then
    every pubsub function (project and application) whose C{channel} one
    of those messagings matches the same way;
  - Taubyte subscribes only when a function asks (C{setSubscriptionChannel}
    in a running function: L{PubsubTriggers.subscribe}); nothing
    subscribes at start.  tau adds L{PubsubTriggers.subscribeProject} and
    L{PubsubTriggers.subscribeAll} (the projects the C{p2p/pubsub/<mh>}
    index names), so functions serve their channels from the start.

Unlike Taubyte, a topic has one subscription however many functions ask
for it (Taubyte runs every message once per asking function), a message
is dropped only when every resource that asked for the topic is its
source (Taubyte: per asker), and the runs under way per topic are
bounded (L{PubsubTriggers.maxRunning}; past it, messages wait in the
subscription's bounded queue).

P2P: a C{/substrate/p2p/v1} command, whatever its name, carries C{{matcher:
{Project, Application, Protocol, Command}, data}}; the service whose
C{protocol} is the matcher's (project first, then the application) must
exist, and the p2p function whose C{service} and C{command} are the
matcher's (project first, then the application) runs with the body
(C{matcher} dropped, C{command} and C{protocol} set); the answer is
C{{"data": bytes}}, or C{{}} when the function wrote none.
"""

from functools import lru_cache

import cbor2
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.logger import Logger

from tau.project import lookups
from tau.project.indexes import multihash
from tau.saferegex import UnsafeRegex, compileSafe
from tau.services.commands import CommandError, decodeCBOR
from tau.services.framework import CommandRouter

log = Logger()

#: Taubyte's C{SubstrateP2PProtocol}
P2P_PROTOCOL = "/substrate/p2p/v1"

PUBSUB = "pubsub"
P2P = "p2p"

#: the longest channel name, matcher field and messaging pattern
MAX_NAME = 512


class NoMatch(LookupError):
    """
    Nothing in the project's config serves the channel or command.
    """


def topicOf(project, application, channel):
    """
    The pubsub topic of C{channel} of C{project} (and C{application}).

    @raise ValueError: an empty or too long channel.
    """
    if channel.startswith("/"):
        channel = channel[1:]
    if not channel or len(channel) > MAX_NAME:
        raise ValueError(f"a channel of 1 to {MAX_NAME} characters, not {channel!r}")
    return multihash(project + (application or "")) + "/" + channel


def encodeEnvelope(seq, source, data):
    return cbor2.dumps({"0": seq, "1": source, "2": bytes(data)})


def decodeEnvelope(raw):
    """
    C{(source, data)} of a message's envelope.

    @raise ValueError: it is not one.
    """
    try:
        value = decodeCBOR(raw)
    except CommandError as e:
        raise ValueError(str(e)) from None
    if not isinstance(value, dict):
        raise ValueError("not a map")
    source = value.get("1", "")
    data = value.get("2", b"")
    if not isinstance(source, str) or not isinstance(data, bytes):
        raise ValueError("source must be text and data bytes")
    return source, data


@lru_cache(maxsize=256)
def _pattern(match):
    try:
        return compileSafe(match, MAX_NAME)
    except UnsafeRegex as e:
        log.info("a messaging match {match!r} is refused: {why}", match=match, why=str(e))
        return None


def matches(messaging, name):
    """
    Taubyte's messaging match: C{match} equal to C{name}, or (with
    C{regex}) found in it.
    """
    match = messaging.get("match")
    if not isinstance(match, str):
        return False
    if match == name:
        return True
    if messaging.get("regex") is True:
        pattern = _pattern(match)
        return pattern is not None and pattern.search(name) is not None
    return False


async def currentProject(fetch, project):
    """
    The project's config on C{main}, else C{master} (L{lookups.project}), or
    None.
    """
    for branch in lookups.SERVED_BRANCHES:
        found = await lookups.project(fetch, project, branch)
        if found is not None:
            return found
    return None


def _scopes(found, application):
    """
    C{[(application or None, tree)]}: the project's, then the
    application's (when it has one).
    """
    tree = found["object"]
    scopes = [(None, tree)]
    if application:
        apps = tree.get("applications")
        app = apps.get(application) if isinstance(apps, dict) else None
        if isinstance(app, dict):
            scopes.append((application, app))
    return scopes


def _resources(scope, group):
    resources = scope.get(group)
    if not isinstance(resources, dict):
        return []
    return [(rid, config) for rid, config in resources.items() if isinstance(config, dict)]


def _function(found, application, rid, config):
    return {"project": found["project"], "application": application, "group": "functions", "id": rid,
            "branch": found["branch"], "commit": found["commit"], "config": config}


async def pubsubFunctions(fetch, project, application, channel):
    """
    The pubsub functions a message on C{channel} of C{project} (and
    C{application}) runs, in the project's current config.
    """
    found = await currentProject(fetch, project)
    if found is None:
        return []
    scopes = _scopes(found, application)
    messagings = [m for _, scope in scopes for _, m in _resources(scope, "messaging") if matches(m, channel)]
    picks = []
    for appId, scope in scopes:
        for rid, config in _resources(scope, "functions"):
            fnChannel = config.get("channel")
            if config.get("type") != PUBSUB or not isinstance(fnChannel, str):
                continue
            if any(matches(m, fnChannel) for m in messagings):
                picks.append(_function(found, appId, rid, config))
    return picks


class _Topic:
    def __init__(self, project, application, subscription, maxRunning):
        self.project = project
        self.application = application
        self.subscription = subscription
        self.resources = set()
        self.semaphore = DeferredSemaphore(maxRunning)
        self.running = set()
        self.reader = None


class PubsubTriggers:
    """
    @param pubsub: an L{tau.interfaces.IPubSub}.
    @param fetch: C{async fetch(path)} of tns (a L{TNSClient}'s, cached).
    @param run: C{async run(function, topic, data)}: runs C{function}
        (see the module) for one message; what it raises is logged.
    @param lookup: C{async lookup(prefix)} of tns (key names), or None
        (L{subscribeAll} is then not available).

    @ivar handled: messages that ran functions; C{ignored}: messages
        dropped (their own source, or not an envelope); C{failed}: runs
        that raised.
    """

    #: runs under way at once per topic
    maxRunning = 64
    #: topics subscribed at once
    maxTopics = 1024

    def __init__(self, pubsub, fetch, run, lookup=None):
        self._pubsub = pubsub
        self._fetch = fetch
        self._run = run
        self._lookup = lookup
        self._topics = {}
        self._seq = 0
        self.handled = 0
        self.ignored = 0
        self.failed = 0

    def topics(self):
        return sorted(self._topics)

    async def lookup(self, project, application, channel):
        return await pubsubFunctions(self._fetch, project, application, channel)

    async def subscribe(self, project, application, resource, channel):
        """
        What a function's C{setSubscriptionChannel} does: check that the
        channel serves some function, then listen to its topic (once).
        C{resource} (the asking function's id) is a source whose
        messages are not run for it.  The topic.

        @raise ValueError: a bad channel, or too many topics.
        @raise NoMatch: nothing serves the channel.
        """
        topic = topicOf(project, application, channel)
        entry = self._topics.get(topic)
        if entry is None:
            if not await self.lookup(project, application, _channelOf(topic)):
                raise NoMatch(f"no messaging and pubsub function serve channel {channel!r} of {project}")
            entry = self._topics.get(topic)
        if entry is None:
            if len(self._topics) >= self.maxTopics:
                raise ValueError(f"already {self.maxTopics} topics subscribed")
            entry = _Topic(project, application, self._pubsub.subscribe(topic), self.maxRunning)
            self._topics[topic] = entry
            entry.reader = Deferred.fromCoroutine(self._read(topic, entry))
            entry.reader.addErrback(lambda f: log.failure("pubsub trigger {topic} stopped", f, topic=topic))
        entry.resources.add(resource)
        return topic

    async def publish(self, project, application, resource, channel, data):
        """
        What a function's C{publishToChannel} does: publish C{data} on the
        channel's topic in an envelope naming C{resource}.

        @raise NoMatch: nothing serves the channel.
        """
        topic = topicOf(project, application, channel)
        if not await self.lookup(project, application, _channelOf(topic)):
            raise NoMatch(f"no messaging and pubsub function serve channel {channel!r} of {project}")
        self._seq += 1
        await self._pubsub.publish(topic, encodeEnvelope(self._seq, resource, data))

    async def subscribeProject(self, project):
        """
        Subscribe every pubsub function of C{project}'s current config to its
        channel (in its own scope), when a messaging serves it; the topics.
        """
        found = await currentProject(self._fetch, project)
        if found is None:
            return []
        tree = found["object"]
        scopes = [(None, tree)]
        apps = tree.get("applications")
        if isinstance(apps, dict):
            scopes += [(a, app) for a, app in sorted(apps.items()) if isinstance(app, dict)]
        topics = []
        for appId, scope in scopes:
            for rid, config in _resources(scope, "functions"):
                channel = config.get("channel")
                if config.get("type") != PUBSUB or not isinstance(channel, str):
                    continue
                try:
                    topics.append(await self.subscribe(project, appId, rid, channel))
                except (NoMatch, ValueError) as e:
                    log.info("pubsub function {id} of {project} not subscribed: {why}", id=rid, project=project, why=str(e))
        return topics

    async def subscribeAll(self):
        """
        L{subscribeProject} for every project the C{p2p/pubsub/<mh>} index
        names (every project with a messaging); the topics.
        """
        if self._lookup is None:
            raise RuntimeError("subscribeAll needs tns's lookup")
        projects = []
        for key in await self._lookup(["p2p", "pubsub"]):
            segments = [s for s in key.split("/") if s]
            if len(segments) != 3:
                continue
            for value in await self._fetch(segments) or []:
                parsed = lookups.parseIndexValue(value)
                if parsed is not None and parsed[1] not in projects:
                    projects.append(parsed[1])
        topics = []
        for project in projects:
            topics += await self.subscribeProject(project)
        return topics

    async def _read(self, topic, entry):
        async for message in entry.subscription:
            try:
                source, data = decodeEnvelope(message.data)
            except ValueError as e:
                self.ignored += 1
                log.debug("pubsub {topic}: a message that is not an envelope: {why}", topic=topic, why=str(e))
                continue
            if entry.resources <= {source}:
                self.ignored += 1
                continue
            await entry.semaphore.acquire()
            running = Deferred.fromCoroutine(self._handle(topic, entry, data))
            entry.running.add(running)
            running.addBoth(self._done, entry, running)

    def _done(self, result, entry, running):
        entry.running.discard(running)
        entry.semaphore.release()
        return None

    async def _handle(self, topic, entry, data):
        try:
            functions = await self.lookup(entry.project, entry.application, _channelOf(topic))
        except Exception:
            log.failure("pubsub {topic}: looking its functions up failed", topic=topic)
            return
        self.handled += 1
        runs = [Deferred.fromCoroutine(self._run(function, topic, data)) for function in functions]
        for (ok, result), function in zip(await DeferredList(runs, consumeErrors=True), functions):
            if not ok:
                self.failed += 1
                log.info("pubsub {topic}: function {id} failed: {why}", topic=topic, id=function["id"],
                         why=result.getErrorMessage())

    async def stop(self):
        """
        Cancel every subscription and wait for the runs under way.
        """
        topics, self._topics = self._topics, {}
        for entry in topics.values():
            entry.subscription.cancel()
        for entry in topics.values():
            await entry.reader
            if entry.running:
                await DeferredList(list(entry.running))


def _channelOf(topic):
    return topic.partition("/")[2]


def _matcherField(matcher, name):
    for key, value in matcher.items():
        if isinstance(key, str) and key.lower() == name.lower():
            if not isinstance(value, str) or len(value) > MAX_NAME:
                raise ValueError(f"decoding matcher failed: {name} must be text of at most {MAX_NAME} characters")
            return value
    return ""


async def p2pFunction(fetch, project, application, protocol, command):
    """
    The p2p function serving C{command} on C{protocol} for C{project}
    (and C{application}): the service of that protocol must exist (project
    first, then the application); the function is the first whose
    C{service} and C{command} are these, project first.

    @raise NoMatch: no such service or function.
    """
    found = await currentProject(fetch, project)
    if found is None:
        raise NoMatch(f"no config for project {project!r} on {' or '.join(lookups.SERVED_BRANCHES)}")
    scopes = _scopes(found, application)
    if not any(s.get("protocol") == protocol for _, scope in scopes for _, s in _resources(scope, "services")):
        raise NoMatch(f"no services found on protocol {protocol}")
    for appId, scope in scopes:
        for rid, config in _resources(scope, "functions"):
            if config.get("type") == P2P and config.get("service") == protocol and config.get("command") == command:
                return _function(found, appId, rid, config)
    raise NoMatch(f"no P2P function serves command {command!r} on protocol {protocol}")


class P2PTriggers:
    """
    The C{substrate-p2p} command handler.

    @param fetch: C{async fetch(path)} of tns.
    @param run: C{async run(function, command, body, fromPeer, toPeer)}:
        runs C{function} for the command; the bytes it answered or None.
    @param localPeer: this node's L{tau.identity.PeerID}.
    """

    def __init__(self, fetch, run, localPeer):
        self._fetch = fetch
        self._run = run
        self._localPeer = localPeer

    async def handle(self, peer, body):
        """
        A L{CommandRouter} handler (any command name).

        @raise ValueError: no or a bad matcher, no data.
        @raise NoMatch: nothing serves the matcher.
        """
        matcher = body.get("matcher")
        if not isinstance(matcher, dict):
            raise ValueError("matcher not found in command")
        project = _matcherField(matcher, "Project")
        application = _matcherField(matcher, "Application")
        protocol = _matcherField(matcher, "Protocol")
        command = _matcherField(matcher, "Command")
        if not project:
            raise ValueError("decoding matcher failed: no Project")
        function = await p2pFunction(self._fetch, project, application, protocol, command)
        if "data" not in body:
            raise ValueError("missing data in body")
        eventBody = {k: v for k, v in body.items() if k != "matcher"}
        eventBody["command"] = command
        eventBody["protocol"] = protocol
        answer = await self._run(function, command, eventBody, peer, self._localPeer)
        return {} if answer is None else {"data": bytes(answer)}

    def router(self, clock, **limits):
        """
        A L{CommandRouter} on L{P2P_PROTOCOL} that serves every command
        with L{handle}; C{limits} are the router's (C{handlerTimeout}...).
        """
        router = CommandRouter(P2P_PROTOCOL, clock, **limits)
        router.defineAny(self.handle)
        return router
