"""
tau: a Taubyte cloud node on Twisted.

Embedding::

    from tau import loadConfig, makeNode
    node = makeNode(loadConfig(shape="full", root=path), reactor=reactor)
    node.setServiceParent(application)
"""

from tau._version import __version__


def loadConfig(*args, **kwargs):
    """
    See L{tau.config.loadConfig}.
    """
    from tau.config import loadConfig

    return loadConfig(*args, **kwargs)


def makeNode(config, reactor):
    """
    See L{tau.node.makeNode}.
    """
    from tau.node import makeNode

    return makeNode(config, reactor)


__all__ = ["__version__", "loadConfig", "makeNode"]
