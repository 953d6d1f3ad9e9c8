"""
Names to ids: the references between resources, resolved as Taubyte's
compiler resolves them, and the mistakes around them.

References are function and website C{domains}, function and smartop
C{source: libraries/<name>}, and every resource's own C{smartops:<name>}
tags (smartops themselves excepted; Taubyte's old compiler also gave a
resource its application's and library's tags, tcc does not, nor do we).  A name is looked up in the resource's own
scope, then, from an application, in the project; C{/name} is the
project's only; C{../name} is the parent scope's only (from an application,
the project); sibling applications never see each other.

Ids must be unique within a group of one scope (Taubyte keys each group's
resources by id).  The same id in the project and an application is
allowed, as Taubyte allows it (its own test project does it).

A library tagged with a smartop built from that same library (directly or
through other libraries and smartops) is a cycle: the smartop would guard
its own code.  It is refused.
"""

from tau.project.scopes import SINGULAR

SMARTOP_TAG = "smartops:"


def checkIds(project, apps, report):
    """
    Report missing application ids and ids used twice in one group.
    """
    for scope in [project] + apps:
        seen = {}
        for resource in scope.all():
            if resource.id is None:
                continue
            other = seen.setdefault((resource.group, resource.id), resource)
            if other is not resource:
                report.error(resource.file, resource.idLine, "id", f"id {resource.id} is already used by {resource.group}/{other.name} ({other.where()})")
    appIds = {}
    for app in apps:
        if app.id is None:
            continue
        other = appIds.setdefault(app.id, app)
        if other is not app:
            report.error(app.file, 1, "id", f"id {app.id} is already used by application {other.name} ({other.file})")


def lookup(project, scope, group, reference):
    """
    The resource C{reference} names from C{scope}.

    @return: C{(resource, None)} or C{(None, message)}.
    """
    name = reference
    if name.startswith("/"):
        scopes, name = [project], name[1:]
    else:
        up = 0
        while name.startswith("../"):
            up += 1
            name = name[3:]
        depth = 2 if scope.app else 1
        if up >= depth:
            return None, f"reference scope {reference!r} climbs above the project root"
        if up:
            scopes = [project]
        else:
            scopes = [scope, project] if scope.app else [project]
    for candidate in scopes:
        found = candidate.resources[group].get(name)
        if found is not None:
            return found, None
    where = "the project" if scopes == [project] else f"application {scope.name} or the project"
    return None, f"no {SINGULAR[group]} named {name!r} in {where}"


def _resolve(report, project, resource, group, got, reference, line):
    """
    C{(id, resource)} of what C{reference} names, or C{(None, None)} when
    nothing does (reported).
    """
    target, message = lookup(project, resource.scope, group, reference)
    if target is None:
        report.error(resource.file, line, got.name, message)
        return None, None
    return target.id, target


def resolve(project, apps, report):
    """
    Replace names by ids in every resource's C{wire}; return the edges the
    cycle check needs: C{{library: [smartop]}}, C{{smartop: library}}.
    """
    guards, sources = {}, {}
    for scope in [project] + apps:
        for resource in scope.all():
            if "domains" in resource.read:
                got = resource.read["domains"]
                ids = [_resolve(report, project, resource, "domains", got, name, line)[0] for name, line in zip(got.value, got.lines)]
                resource.wire["domains"] = ids if None not in ids else []
            if "source" in resource.read:
                got = resource.read["source"]
                if got.value.startswith("libraries/"):
                    libraryId, library = _resolve(report, project, resource, "libraries", got, got.value[len("libraries/") :], got.line)
                    resource.wire["source"] = f"libraries/{libraryId}"
                    if library is not None and resource.group == "smartops":
                        sources[resource] = library
            if "tags" in resource.read and resource.group != "smartops":
                _tags(report, project, resource, guards)
    return guards, sources


def _tags(report, project, resource, guards):
    got = resource.read["tags"]
    ids = []
    for tag, line in zip(got.value, got.lines):
        if not tag.startswith(SMARTOP_TAG):
            continue
        smartopId, smartop = _resolve(report, project, resource, "smartops", got, tag[len(SMARTOP_TAG) :], line)
        ids.append(smartopId)
        if smartop is not None and resource.group == "libraries":
            guards.setdefault(resource, []).append((smartop, line))
    if ids:
        resource.wire["smartops"] = ids


def checkCycles(guards, sources, report):
    """
    Report each library -> smartop -> library cycle once, at the tag that
    leaves the first library of the cycle as it was found.
    """
    edges = {library: [(op, line, sources[op]) for op, line in ops if op in sources] for library, ops in guards.items()}
    state = {}
    for start in edges:
        if start in state:
            continue
        # Iterative depth-first walk: a deep chain cannot exhaust the stack.
        path, taken, pending = [start], [], [iter(edges[start])]
        state[start] = "open"
        while pending:
            step = next(pending[-1], None)
            if step is None:
                state[path.pop()] = "done"
                pending.pop()
                if taken:
                    taken.pop()
                continue
            op, line, target = step
            if state.get(target) == "open":
                first = path.index(target)
                hops = taken[first:] + [(op, line)]
                text = "".join(f"libraries/{lib.name} -> smartops/{hop[0].name} -> " for lib, hop in zip(path[first:], hops))
                report.error(target.file, hops[0][1], "tags", f"cyclic reference: {text}libraries/{target.name}")
            elif target not in state:
                state[target] = "open"
                path.append(target)
                taken.append((op, line))
                pending.append(iter(edges.get(target, ())))
