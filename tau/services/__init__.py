"""
The registry of Taubyte services and the built-in shapes.

A service factory has the signature C{(config, node, reactor) -> IService} and
is named here as C{"module:function"} so that nothing is imported until a node
needs it.  A service name Taubyte knows but this build does not provide yet is
listed in L{KNOWN} only: a shape that names it is refused, never ignored.
"""

from importlib import import_module

# Every service of a Taubyte cloud.
KNOWN = ("auth", "gateway", "hoarder", "monkey", "patrick", "seer", "substrate", "tns")

# The services this build provides: name -> "module:factory".
FACTORIES = {}

# gateway and substrate never share a node.
EXCLUSIVE = (frozenset({"gateway", "substrate"}),)


def available():
    """
    The names of the services this build can run, sorted.
    """
    return sorted(FACTORIES)


def builtinShapes():
    """
    The built-in shapes and their services.  C{full} is every service this
    build provides except gateway; every service is also a shape of its own.
    """
    shapes = {"full": [name for name in available() if name != "gateway"]}
    for name in KNOWN:
        shapes[name] = [name]
    return shapes


def factoryFor(name):
    """
    Import and return the factory of service C{name}.

    @raise KeyError: when this build does not provide C{name}.
    """
    module, _, function = FACTORIES[name].partition(":")
    return getattr(import_module(module), function)
