"""
Who reaches what in tns.

A peer the node trusts (another service of this cloud, the node itself)
reads and writes every key, as every Taubyte service does.  Any other
caller presents a credential in the body's C{token} key (as auth's
callers do, a tau extension: Taubyte's p2p API has no caller identity);
auth says which projects it reaches, and it reads and writes only their
keys:

- a key under a project (its object, its branch pointers, its wasm and
  repository indexes) belongs to that project;
- a shared index (C{http/...}, C{p2p/pubsub/...}) belongs to the projects
  its index values name: a caller sees its own entries, and its push
  replaces its own entries and keeps the others';
- C{libraries/<id>} and C{domains/<fqdn>/links} hold no project: a caller
  never reads them, and its push sets them only where absent;
- every other key (C{assets/...}, written by build jobs) is the cloud's.

What a caller does not reach is answered exactly as what does not exist:
a fetch answers null, a lookup or list leaves it out, a push is refused
with the same text whether the project is someone else's or nobody's.
"""

from twisted.internet.defer import maybeDeferred

from tau.services.tns.paths import indexProject, pathProject, valueProjects

#: seconds auth's answer for a credential is kept
REACH_TTL = 10.0
#: credentials whose answer is kept at once
REACH_CACHE = 1024
#: top-level keys a tenant may set where absent
SHARED_UNOWNED = ("libraries", "domains")

HIDDEN = object()


class Refused(Exception):
    """
    A push a caller may not make (the text names only the path it gave).
    """


def refused(path):
    return Refused(f"/{'/'.join(path)}: not in a project you may write")


class Everything:
    """
    What a trusted peer reaches.
    """

    everything = True

    def sees(self, path, value):
        return value

    def admit(self, path, value, existing):
        return value


class Projects:
    """
    What a caller that reaches C{projects} reaches.
    """

    everything = False

    def __init__(self, projects):
        self.projects = frozenset(projects)

    def sees(self, path, value):
        """
        C{value} as this caller sees it at C{path}, or L{HIDDEN}.
        """
        owner = pathProject(path)
        if owner is not None:
            return value if owner in self.projects else HIDDEN
        if not valueProjects(value):
            return HIDDEN
        if isinstance(value, list):
            mine = [v for v in value if indexProject(v) in self.projects]
            return mine if mine else HIDDEN
        return value if indexProject(value) in self.projects else HIDDEN

    def needsExisting(self, path, value):
        return pathProject(path) is None

    def admit(self, path, value, existing):
        """
        What to store at C{path} when this caller pushes C{value} there
        (C{existing} is what is stored), or L{HIDDEN} to leave it.

        @raise Refused: when the key is not this caller's.
        """
        named = valueProjects(value)
        if not named <= self.projects:
            raise refused(path)
        owner = pathProject(path)
        if owner is not None:
            if owner not in self.projects:
                raise refused(path)
            return value
        if named:
            if not isinstance(value, list):
                if existing is not None and not valueProjects(existing) <= self.projects:
                    raise refused(path)
                return value
            kept = existing if isinstance(existing, list) else []
            kept = [v for v in kept if indexProject(v) is not None and indexProject(v) not in self.projects]
            return kept + [v for v in value if v not in kept]
        if path[0] in SHARED_UNOWNED:
            return value if existing is None else HIDDEN
        raise refused(path)


EVERYTHING = Everything()
NOTHING = Projects(())


class Tenancy:
    """
    @param trusted: C{trusted(peer) -> bool}, or a coroutine or Deferred of
        one (L{tau.interfaces.IMembers.isMember}).
    @param projectsOf: C{async projectsOf(token) -> [project id]} (auth's
        answer for a credential), or None: callers that are not trusted
        reach nothing.
    @param clock: IReactorTime.
    """

    def __init__(self, trusted, projectsOf, clock):
        self.trusted = trusted
        self.projectsOf = projectsOf
        self.clock = clock
        self._known = {}

    async def reachOf(self, peer, body):
        if await maybeDeferred(self.trusted, peer):
            return EVERYTHING
        token = body.get("token")
        if not isinstance(token, str) or not token or self.projectsOf is None:
            return NOTHING
        now = self.clock.seconds()
        known = self._known.get(token)
        if known is not None and known[0] > now:
            return known[1]
        reach = Projects(await self.projectsOf(token))
        if len(self._known) >= REACH_CACHE:
            self._known = {t: k for t, k in self._known.items() if k[0] > now}
            if len(self._known) >= REACH_CACHE:
                self._known.clear()
        self._known[token] = (now + REACH_TTL, reach)
        return reach
