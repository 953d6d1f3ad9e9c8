"""
The C{tau} command for operators, in kubo's spirit: C{tau init}, C{tau id},
C{tau config show}, ...  Commands that need a running node talk to it through
its local control API (L{tau.control}).

Each command module registers its subcommands in L{COMMANDS}; L{main} parses
the command line and runs the chosen one under the reactor.
"""

import argparse
import sys

from tau._version import __version__
from tau.control.client import ControlError
from tau.errors import ConfigError

COMMAND_MODULES = ("tau.cli.node", "tau.cli.swarm", "tau.cli.dht", "tau.cli.store", "tau.cli.kvdb", "tau.cli.pubsub", "tau.cli.project", "tau.cli.tns", "tau.cli.job", "tau.cli.hoarder", "tau.cli.cloud", "tau.cli.run", "tau.cli.dream")


class UsageError(Exception):
    """
    The command line is wrong; the message says how.
    """


class _Parser(argparse.ArgumentParser):
    """
    Command-line mistakes are one line, C{tau: ...}, and exit status 2.
    """

    def error(self, message):
        self.exit(2, f"tau: {message} (see: {self.prog} --help)\n")


def buildParser():
    from importlib import import_module

    parser = _Parser(prog="tau", description="Operate a tau (Taubyte) node.")
    parser.add_argument("--version", action="version", version=f"tau {__version__}")
    parser.add_argument("--root", "-r", default=None, help="the node's root folder (default: $TAU_ROOT or ~/.tau)")
    parser.add_argument("--shape", "-s", default="full", help="the node's shape (default: full)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def main(argv=None):
    """
    Entry point of the C{tau} console script.
    """
    parser = buildParser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except (ConfigError, ControlError, UsageError) as e:
        print(f"tau: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result or 0


def nodeConfig(args):
    """
    The config of the node a command is about (its root must exist), with a
    warning on stderr for each file holding a secret that other users can
    open.
    """
    from tau.config import defaultRoot, loadConfig
    from tau.private import WARNING, exposed

    config = loadConfig(shape=args.shape, root=args.root or defaultRoot(), create=False)
    for path, mode in exposed([*config.secretFiles, config.apiTokenFile]):
        print("tau: warning: " + WARNING.format(path=path, mode=f"{mode:04o}"), file=sys.stderr)
    return config


def runReactor(coroutineFunction, *args):
    """
    Run C{coroutineFunction(reactor, *args)} under the reactor and return its
    result; exceptions propagate to the caller.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    outcome = {}

    def start():
        d = Deferred.fromCoroutine(coroutineFunction(reactor, *args))
        d.addCallbacks(lambda r: outcome.setdefault("result", r), lambda f: outcome.setdefault("failure", f))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=True)
    if "failure" in outcome:
        outcome["failure"].raiseException()
    return outcome.get("result")
