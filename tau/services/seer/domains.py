"""
L{ProjectDomains}: whether a name is a project's domain seer answers for,
asked of tns and auth through their clients only.

- a generated name (under the generated-domain suffix) is served when tns has a website or
  function on it;
- a custom name (outside the zone) is served when tns has one on it and
  the TXT record C{<project[:8]>.<name>} of one of those projects holds
  the token auth checks for it (C{domain verify}).

Verdicts are kept C{ttl} seconds (at most L{MAX_KEPT}); at most
L{MAX_PENDING} names are being checked at once, a name past it is not
served.  A check that fails (tns or auth unreachable) is not served and
not kept.
"""

from twisted.logger import Logger


MAX_KEPT = 4096
MAX_PENDING = 64
#: the most TXT texts read for one project
MAX_TOKENS = 8

log = Logger()


class ProjectDomains:
    """
    @param generated: the suffix of generated project domains.
    @param tns: has C{async fetch(path)} and C{close()} (a tns client).
    @param auth: has C{async verifyDomain(fqdn, project, token)} (an auth
        client).
    @param txt: C{async txt(name) -> [text]}: the TXT records of a name.
    @param clock: IReactorTime.
    @param ttl: seconds a verdict is kept.
    """

    def __init__(self, generated, tns, auth, txt, clock, ttl):
        self.generated = "." + generated.strip(".").lower()
        self.tns = tns
        self.auth = auth
        self.txt = txt
        self.clock = clock
        self.ttl = ttl
        self._kept = {}
        self._pending = 0

    async def served(self, name):
        """
        Whether seer answers for C{name} (text, lower-case, no final dot).
        """
        kept = self._kept.get(name)
        now = self.clock.seconds()
        if kept is not None and kept[1] > now:
            return kept[0]
        if self._pending >= MAX_PENDING:
            return False
        self._pending += 1
        try:
            verdict = await self._check(name)
        except Exception as e:
            log.info("seer: checking {name} failed: {why}", name=name, why=str(e) or e.__class__.__name__)
            return False
        finally:
            self._pending -= 1
        if len(self._kept) >= MAX_KEPT:
            self._kept = {n: v for n, v in self._kept.items() if v[1] > now}
        if len(self._kept) < MAX_KEPT:
            self._kept[name] = (verdict, now + self.ttl)
        return verdict

    def close(self):
        """
        Forget every verdict (the tns client is the node's).
        """
        self._kept.clear()

    async def _check(self, name):
        projects = await self.tns.projectsServing(name)
        if not projects or name.endswith(self.generated):
            return bool(projects)
        for project in projects:
            for token in (await self.txt(f"{project[:8]}.{name}"))[:MAX_TOKENS]:
                if await self.auth.verifyDomain(name, project, token):
                    return True
        return False
