"""
Control API commands of patrick's jobs: job/list, job/show, job/logs,
job/retry, job/cancel.

They reach patrick through L{patrickClient}: the node's own patrick
service where it runs one, else the patrick nodes it finds (as a node of
the cloud, which patrick serves).  Jobs are answered in the JSON form of
patrick's HTTP API (L{tau.services.patrick.job.Job.toJSON}), so the CLI
and the HTTP API show the same jobs in the same states.
"""

from tau.control.routes import APIError, argument, command
from tau.control.store import _contentOf, _guard
from tau.services.commands import RemoteError
from tau.services.framework import ServiceError
from tau.services.patrick.client import PatrickClient, clientFor
from tau.services.patrick.job import JobStatus

#: the most bytes of one log job/logs reads
MAX_LOG = 4 << 20
#: the longest id a job command takes
MAX_ID = 128
#: seconds a log may take to come
LOG_TIMEOUT = 30.0


def patrickClient(node):
    """
    A L{PatrickClient} for the node: on its own service where it runs
    patrick (every patrick node reads every job), else on the patrick
    nodes it finds.
    """
    service = getattr(node, "shapeServices", {}).get("patrick")
    if service is not None:
        return PatrickClient(None, None, client=service.local())
    return clientFor(node.host, node.dht)


async def _ask(coroutine):
    try:
        return await coroutine
    except RemoteError as e:
        raise APIError(f"patrick: {str(e).partition(' failed: ')[2] or e}") from None
    except ServiceError as e:
        raise APIError(f"patrick: {e}", status=502) from None


def _jid(args):
    jid = argument(args)
    if not 0 < len(jid) <= MAX_ID or "/" in jid:
        raise APIError(f"expected a job id of 1 to {MAX_ID} characters")
    return jid


def shown(job):
    """
    A job as the API answers it: patrick's HTTP JSON, and its state's name.
    """
    return dict(job.toJSON(), State=JobStatus(job.status).name.lower())


@command("job/list")
async def jobList(node, args):
    """
    Every job (C{project}: of one project only), open ones first.
    """
    project = argument(args, "project", required=False)
    jobs = await _ask(patrickClient(node).jobs(project))
    return {"Jobs": [shown(job) for job in jobs]}


@command("job/show")
async def jobShow(node, args):
    return {"Job": shown(await _ask(patrickClient(node).info(_jid(args))))}


@command("job/logs")
async def jobLogs(node, args):
    """
    The logs of a job: C{[{Name, Cid, Text}]} in the order of their names,
    each at most L{MAX_LOG} bytes (C{Truncated} when longer).
    """
    job = await _ask(patrickClient(node).info(_jid(args)))
    content = _contentOf(node)
    logs = []
    for name, cid in sorted(job.logs.items()):
        data = b""
        chunks = await _guard(f"log {name}", content.cat(cid, 0, MAX_LOG + 1, LOG_TIMEOUT))
        async for chunk in chunks:
            data += chunk
        logs.append({"Name": name, "Cid": cid, "Text": data[:MAX_LOG].decode("utf-8", "replace"),
                     "Truncated": len(data) > MAX_LOG})
    return {"Job": job.id, "State": JobStatus(job.status).name.lower(), "Logs": logs}


@command("job/retry")
async def jobRetry(node, args):
    return {"Retry": await _ask(patrickClient(node).retry(_jid(args)))}


@command("job/cancel")
async def jobCancel(node, args):
    return {"Cancelled": await _ask(patrickClient(node).cancel(_jid(args)))}
