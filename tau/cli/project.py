"""
tau project compile DIR: compile a Taubyte project config repository (no
node needed); tau project push DIR: compile it and publish it to tns
through the running node; tau project asset PROJECT RESOURCE PATH: publish
a resource's build (a function's WASM file, a website's folder) without a
build job.
"""

import json
import os
import subprocess
import sys

from tau.cli import UsageError, runReactor
from tau.cli.swarm import _config
from tau.control.client import call
from tau.project import DEFAULT_BRANCH, ProjectErrors, compileProject


def register(sub):
    p = sub.add_parser("project", help="Taubyte project config repositories")
    psub = p.add_subparsers(dest="action", metavar="ACTION")
    psub.required = True
    compile = psub.add_parser(
        "compile",
        help="compile a project config repository into its tns tree (JSON), or print every error",
        description="Print the compiled tree as JSON (exit 0), or every error as FILE:LINE: FIELD: message on stderr (exit 1).",
    )
    compile.add_argument("dir", help="the repository's folder")
    compile.add_argument("--branch", default=DEFAULT_BRANCH, help=f"the branch the index values name (default {DEFAULT_BRANCH})")
    compile.add_argument("--cloud", default=None, metavar="FQDN", help="the network whose clouds: entry gives the project's account and plan")
    compile.set_defaults(run=compileCommand)
    push = psub.add_parser(
        "push",
        help="compile a project config repository and publish it to tns through the running node",
        description="The node compiles DIR and publishes it: the indexes, the config under the commit, then the branch's current pointer.",
    )
    push.add_argument("dir", help="the repository's folder")
    push.add_argument("--branch", default=DEFAULT_BRANCH, help=f"the branch to publish (default {DEFAULT_BRANCH})")
    push.add_argument("--commit", default=None, help="the commit to publish as (default: DIR's git HEAD)")
    push.set_defaults(run=pushCommand)
    asset = psub.add_parser(
        "asset",
        help="publish a resource's build (a WASM file, a website folder) through the running node",
        description="The node adds PATH (on its machine) to its store, pinned and provided, and pushes the CID "
        "to tns as the build of RESOURCE of PROJECT on the branch (what a build job publishes).",
    )
    asset.add_argument("project", help="the project's id")
    asset.add_argument("resource", help="the resource's id (a function, a website, a library)")
    asset.add_argument("path", help="the build: a file (a function's or library's WASM) or a folder (a website)")
    asset.add_argument("--branch", default=DEFAULT_BRANCH, help=f"the branch the build is for (default {DEFAULT_BRANCH})")
    asset.set_defaults(run=assetCommand)


def compileCommand(args):
    try:
        compiled = compileProject(args.dir, branch=args.branch, cloud=args.cloud)
    except ProjectErrors as e:
        for error in e.errors:
            print(error, file=sys.stderr)
        return 1
    json.dump(compiled.asJSON(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def gitHead(folder):
    """
    The commit DIR's git HEAD names (run before the reactor starts).
    """
    try:
        done = subprocess.run(["git", "-C", folder, "rev-parse", "--verify", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError(f"{folder}: cannot read its git HEAD ({e}); give --commit") from None
    if done.returncode != 0:
        raise UsageError(f"{folder}: not a git repository with a commit ({done.stderr.strip()}); give --commit")
    return done.stdout.strip()


def pushCommand(args):
    folder = os.path.abspath(args.dir)
    if not os.path.isdir(folder):
        raise UsageError(f"{args.dir}: not a folder")
    commit = args.commit or gitHead(folder)
    params = [("arg", folder), ("branch", args.branch), ("commit", commit)]
    answer = runReactor(lambda reactor: call(reactor, _config(args), "tns/push", params, timeout=600))
    print(f"published {answer['Project']} {answer['Branch']}@{answer['Commit']} through {answer['Peer']}")
    return 0


def assetCommand(args):
    path = os.path.abspath(args.path)
    if not os.path.exists(path):
        raise UsageError(f"{args.path}: no such file or folder")
    params = [("arg", args.project), ("arg", args.resource), ("arg", path), ("branch", args.branch)]
    answer = runReactor(lambda reactor: call(reactor, _config(args), "tns/asset", params, timeout=600))
    print(f"published {answer['Hash']} as {answer['Resource']} of {answer['Project']} {answer['Branch']} ({answer['Key']})")
    return 0
