"""
tau cloud keygen|admit: a cloud's key and the admissions it signs (offline:
no node is needed; keep the cloud's key off the nodes).
"""

import base64
import sys
from pathlib import Path

from tau.cli import UsageError
from tau.cloud import InvalidAdmission, loadCloudKey, makeAdmission
from tau.identity import InvalidKey, PeerID, PrivateKey


def register(sub):
    p = sub.add_parser("cloud", help="a cloud's key and the nodes it admits")
    csub = p.add_subparsers(dest="action", metavar="ACTION")
    csub.required = True

    keygen = csub.add_parser("keygen", help="make a cloud key: writes it to FILE (mode 0600), prints its PeerId (the config's cloud.key)")
    keygen.add_argument("file")
    keygen.set_defaults(run=cloudKeygen)

    admit = csub.add_parser("admit", help="admit a node: prints the admission (the node's config cloud.admission)")
    admit.add_argument("peer", help="the node's PeerId")
    admit.add_argument("--key", required=True, metavar="FILE", help="the cloud key file (tau cloud keygen)")
    admit.add_argument("--service", action="append", required=True, metavar="SERVICE", help="a service the node may run; repeat for more")
    admit.set_defaults(run=cloudAdmit)


def cloudKeygen(args):
    key = PrivateKey.generate()
    path = Path(args.file)
    try:
        with path.open("x", encoding="ascii") as f:
            path.chmod(0o600)
            f.write(base64.b64encode(key.toProtobuf()).decode("ascii") + "\n")
    except FileExistsError:
        raise UsageError(f"{path} exists: not overwritten") from None
    print(key.peerID())
    return 0


def cloudAdmit(args):
    try:
        key = loadCloudKey(Path(args.key).read_text(encoding="ascii"))
        node = PeerID.fromString(args.peer)
        admission = makeAdmission(key, node, args.service)
    except OSError as e:
        raise UsageError(f"{args.key}: {e.strerror}") from None
    except (InvalidKey, InvalidAdmission) as e:
        raise UsageError(str(e)) from None
    sys.stdout.write(admission.text() + "\n")
    return 0
