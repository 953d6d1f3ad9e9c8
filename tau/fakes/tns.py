"""
A tns client on tns commands in memory (L{tau.interfaces.ITNSClient}).
"""


class FakeTNSCalls:
    """
    tns's commands on leaves in memory (C{leaves}: path tuple -> value), as
    a L{tau.services.tns.client.TNSClient} calls them (C{peers}, C{call});
    C{calls} records C{(name, body)}.
    """

    peer = "fake-tns"

    def __init__(self):
        self.leaves = {}
        self.calls = []

    async def peers(self):
        return [self.peer]

    async def call(self, name, body=None, *, peers=None):
        from tau.saferegex import compileSafe
        from tau.services.tns.paths import KEY_PREFIX, assemble, checkPath, leaves

        body = dict(body or {})
        self.calls.append((name, body))
        if name == "push":
            for path, value in leaves(checkPath(body["path"]), body["data"]):
                self.leaves[tuple(path)] = value
            return {"pushed": True}
        if name == "fetch":
            path = tuple(checkPath(body["path"]))
            return {"object": assemble([(list(p[len(path):]), v) for p, v in sorted(self.leaves.items())
                                        if p[:len(path)] == path])}
        if name == "lookup":
            if body.get("regex"):
                # tns's rule: the pattern /tns/v1/<prefix...> searched in
                # every /tns/v1/<key>
                regex = compileSafe("/".join([KEY_PREFIX, *body["prefix"]]))
                keys = [KEY_PREFIX + "/" + "/".join(p) for p in sorted(self.leaves)]
                return {"keys": [k[len(KEY_PREFIX):] for k in keys if regex.search(k)]}
            prefix = tuple(body["prefix"])
            return {"keys": ["/" + "/".join(p) for p in sorted(self.leaves) if p[:len(prefix)] == prefix]}
        if name == "list":
            depth = body["depth"]
            return {"keys": sorted({p[:i] for p in self.leaves for i in range(1, min(depth, len(p)) + 1)})}
        raise LookupError(f'router: command "{name}" not registered')


def fakeTNSClient(clock):
    """
    An L{ITNSClient}: the real client on L{FakeTNSCalls} (its C{calls}
    attribute), nothing cached across pushes (no pubsub).
    """
    from tau.services.tns.client import TNSClient

    return TNSClient(None, None, None, clock, calls=FakeTNSCalls())
