"""
What the tns tests share: a project repository with functions, a website
and an application, and tns's commands on a fake kvdb and pubsub.
"""

from twisted.internet import reactor
from twisted.internet.task import Clock

from tau.fakes import FakeKVDB, FakePubSub
from tau.services.tns.commands import Commands
from tau.services.framework import LocalCalls
from tau.services.tns.storage import Storage
from tau.services.tns.tenancy import Tenancy
from tests.project.helpers import APP_ID, IDS, PROJECT_ID, write

OTHER_PROJECT = "QmTDPCiJR8JVkjd1ZUabBHqBffZZKGSKhrJHeXqRUnu9P4"
GET_ITEMS, DOMAIN, POST_ITEMS, SITE, DATABASE = IDS[0], IDS[1], IDS[2], IDS[5], IDS[6]


def shopProject(root, projectId=PROJECT_ID, fqdn="api.example.com"):
    """
    A project on C{fqdn}: C{GET /items} and C{POST /items} functions, a
    website on C{/} and C{/docs}, an application with a database.
    """
    execution = "execution: {timeout: 1s, memory: 1MB, call: run}\n"
    return write(root, {
        "config.yaml": f"id: {projectId}\nname: shop\n",
        "domains/dom.yaml": f"id: {DOMAIN}\nfqdn: {fqdn}\n",
        "functions/get_items.yaml": f"id: {GET_ITEMS}\nsource: .\n"
        "trigger: {type: https, method: GET, domains: [dom], paths: [/items]}\n" + execution,
        "functions/post_items.yaml": f"id: {POST_ITEMS}\nsource: .\n"
        "trigger: {type: https, method: post, domains: [dom], paths: [/items]}\n" + execution,
        "websites/site.yaml": f"id: {SITE}\ndomains: [dom]\npaths: [/, /docs]\n"
        "source: {branch: main, github: {id: 777, fullname: acme/site}}\n",
        "applications/back/config.yaml": f"id: {APP_ID}\n",
        "applications/back/databases/carts.yaml": f"id: {DATABASE}\nmatch: carts\nstorage: {{size: 1GB}}\n",
    })


TRUSTED = "trusted-peer"


class Tenants:
    """
    C{projectsOf} as auth answers it: a credential -> its projects.
    """

    def __init__(self, reach=None):
        self.reach = reach or {}
        self.asked = 0

    async def __call__(self, token):
        self.asked += 1
        if token not in self.reach:
            raise ValueError("GitHub refused the token")
        return self.reach[token]


def makeCommands(*, maxKeys=100_000, tenants=None, clock=None):
    """
    C{(commands, kvdb, pubsub)}: tns's commands on a fake kvdb; the peer
    L{TRUSTED} is trusted.
    """
    kvdb = FakeKVDB()
    kvdb.stored["tns@service:tns"] = {}
    pubsub = FakePubSub()
    tenancy = Tenancy(lambda peer: peer == TRUSTED, tenants, clock or Clock())
    commands = Commands(Storage(kvdb, "tns@service:tns"), tenancy, pubsub.publish, reactor, maxKeys)
    return commands, kvdb, pubsub


def calls(commands, peer=TRUSTED):
    """
    L{LocalCalls} to C{commands} as C{peer}.
    """
    return LocalCalls(commands.handlers, peer)
