"""
The pubsub node host functions (go-sdk C{pubsub/node}:
C{setSubscriptionChannel(channelPtr, channelLen)} and
C{publishToChannel(channelPtr, channelLen, dataPtr, dataSize)}, each
answering an errno), backed by the substrate's
L{tau.services.substrate.triggers.PubsubTriggers} (put in
L{FunctionServices.pubsub}).

The channel is the calling function's project's (and application's), as
Taubyte scopes it: C{setSubscriptionChannel} subscribes this node to the
channel's topic so the pubsub functions it serves run for its messages
(C{ErrorSubscribeFailed} when no messaging and pubsub function serve it);
C{publishToChannel} publishes the data on it in Taubyte's envelope, naming
the calling function as the source (C{ErrorPublishFailed}).

C{getWebSocketURL{Size}} is not provided: tau has no pubsub WebSocket
endpoint yet, so a guest that imports them links (unknown imports are
traps, see L{tau.services.substrate.wasm.instance}) and traps when it
calls one.

Bounds: a channel name of at most L{MAX_CHANNEL} bytes and data of at most
L{MAX_DATA} bytes (a gossipsub message's data less room for the envelope)
are read; longer ones are refused with the function's errno before
anything is read.
"""

from twisted.logger import Logger

from tau.pubsub.message import MAX_MESSAGE_DATA
from tau.services.substrate.triggers import MAX_NAME
from tau.services.substrate.wasm import errno
from tau.services.substrate.wasm.nodeabi import Errno, answering, readBounded, readText, services

log = Logger()

SUBSCRIBE_FAILED = 20
PUBLISH_FAILED = 21

#: the longest channel name a guest may give
MAX_CHANNEL = MAX_NAME
#: the most bytes a guest may publish (the envelope takes the rest)
MAX_DATA = MAX_MESSAGE_DATA - 1024


class MessagingAbi:
    """
    The pubsub node host functions of one instance.
    """

    def __init__(self, instance):
        self._instance = instance

    def _triggers(self, code):
        triggers = getattr(services(self._instance, code), "pubsub", None)
        if triggers is None:
            raise Errno(code)
        return triggers

    def _wait(self, code, fn, *args):
        node = services(self._instance, code)
        try:
            return node.wait(self._instance, fn, *args)
        except Exception as e:
            log.info("pubsub host call failed: {error}", error=str(e))
            raise Errno(code) from None

    @answering
    def setSubscriptionChannel(self, mem, channelPtr, channelLen):
        channel = readText(mem, channelPtr, channelLen, MAX_CHANNEL, SUBSCRIBE_FAILED)
        triggers = self._triggers(SUBSCRIBE_FAILED)
        context = self._instance.context
        if not context.project:
            raise Errno(SUBSCRIBE_FAILED)
        self._wait(SUBSCRIBE_FAILED, triggers.subscribe, context.project, context.application or None,
                   context.resource, channel)
        return errno.NONE

    @answering
    def publishToChannel(self, mem, channelPtr, channelLen, dataPtr, dataSize):
        channel = readText(mem, channelPtr, channelLen, MAX_CHANNEL, PUBLISH_FAILED)
        data = readBounded(mem, dataPtr, dataSize, MAX_DATA, PUBLISH_FAILED)
        triggers = self._triggers(PUBLISH_FAILED)
        context = self._instance.context
        if not context.project:
            raise Errno(PUBLISH_FAILED)
        self._wait(PUBLISH_FAILED, triggers.publish, context.project, context.application or None,
                   context.resource, channel, data)
        return errno.NONE

    def functions(self):
        return [
            ("setSubscriptionChannel", 2, True, self.setSubscriptionChannel),
            ("publishToChannel", 4, True, self.publishToChannel),
        ]


def messagingFunctions(instance):
    return MessagingAbi(instance).functions()
