"""
tau project compile DIR: compile a Taubyte project config repository (no
node needed).
"""

import json
import sys

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
