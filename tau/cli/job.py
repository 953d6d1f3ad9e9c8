"""
tau job list|show|logs|retry|cancel: the cloud's build jobs (patrick's),
through the running node.
"""

import json

from tau.cli import runReactor
from tau.cli.swarm import _config
from tau.control.client import call


def register(sub):
    p = sub.add_parser("job", help="build jobs (patrick)")
    jsub = p.add_subparsers(dest="action", metavar="ACTION")
    jsub.required = True
    listing = jsub.add_parser("list", help="every job and its state, open ones first")
    listing.add_argument("--project", help="only the jobs of this project")
    listing.add_argument("--json", action="store_true", help="print the jobs as patrick's HTTP API does")
    listing.set_defaults(run=jobList)
    for name, what, run in (("show", "print a job (JSON)", jobShow), ("logs", "print a job's logs", jobLogs),
                            ("retry", "run an ended job again", jobRetry),
                            ("cancel", "cancel an open job", jobCancel)):
        q = jsub.add_parser(name, help=what)
        q.add_argument("jid", help="the job's id")
        q.set_defaults(run=run)


def _call(args, name, params):
    return runReactor(lambda reactor: call(reactor, _config(args), name, params))


def jobList(args):
    params = [("project", args.project)] if args.project else []
    jobs = _call(args, "job/list", params)["Jobs"]
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    for job in jobs:
        repo = job["Meta"]["Repository"]
        print(f"{job['Id']}  {job['State']:<9}  attempt {job['Attempt']}  {repo['provider']}/{repo['id']}"
              f"@{repo['default_branch']}  {job['Meta']['after'][:12]}")
    return 0


def jobShow(args):
    print(json.dumps(_call(args, "job/show", [("arg", args.jid)])["Job"], indent=2))
    return 0


def jobLogs(args):
    answer = _call(args, "job/logs", [("arg", args.jid)])
    if not answer["Logs"]:
        print(f"tau: job {answer['Job']} ({answer['State']}) has no logs yet")
        return 1
    for log in answer["Logs"]:
        print(f"== {log['Name']} ({log['Cid']}){' truncated' if log['Truncated'] else ''}")
        print(log["Text"], end="" if log["Text"].endswith("\n") else "\n")
    return 0


def jobRetry(args):
    print(f"job {_call(args, 'job/retry', [('arg', args.jid)])['Retry']} queued again")
    return 0


def jobCancel(args):
    print(f"job {_call(args, 'job/cancel', [('arg', args.jid)])['Cancelled']} cancelled")
    return 0
