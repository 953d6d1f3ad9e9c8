"""
tau init, tau id, tau config show.
"""

import base64
import json
import sys

import yaml

from tau._version import __version__
from tau.cli import nodeConfig
from tau.config import defaultRoot, loadConfig, publicView, shapeFile
from tau.control.client import call
from tau.errors import ConfigError


def register(sub):
    p = sub.add_parser("init", help="create a node root and its config, without starting it")
    p.set_defaults(run=init)

    p = sub.add_parser("id", help="the node's PeerId and addresses")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p.set_defaults(run=identity)

    p = sub.add_parser("config", help="the node's configuration")
    csub = p.add_subparsers(dest="action", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print the effective config (the private key redacted)")
    show.set_defaults(run=configShow)


def _root(args):
    return args.root if args.root else defaultRoot()


def init(args):
    root = _root(args)
    if shapeFile(root, args.shape).exists():
        raise ConfigError(shapeFile(root, args.shape), None, "already exists: this root is initialised for that shape")
    config = loadConfig(shape=args.shape, root=root, create=True)
    print(f"initialised {config.root} for shape {config.shape}")
    print(f"peer identity: {config.peerID}")
    return 0


def _offlineIdentity(config):
    return {
        "ID": str(config.peerID),
        "PublicKey": base64.b64encode(config.privateKey.publicKey().toProtobuf()).decode("ascii"),
        "Addresses": [],
        "AgentVersion": f"tau/{__version__}",
        "Protocols": [],
        "Shape": config.shape,
        "Services": list(config.services),
    }


async def _id(reactor, config):
    return await call(reactor, config, "id")


def identity(args):
    from tau.cli import runReactor

    config = nodeConfig(args)
    running = config.apiFile.exists()
    if running:
        answer = runReactor(_id, config)
    else:
        answer = _offlineIdentity(config)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(answer["ID"])
    if not running:
        print("(node not running: no addresses)", file=sys.stderr)
    for addr in answer["Addresses"]:
        print(addr)
    return 0


def configShow(args):
    config = nodeConfig(args)
    sys.stdout.write(yaml.safe_dump(publicView(config), sort_keys=False))
    return 0
