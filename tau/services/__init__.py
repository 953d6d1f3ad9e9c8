"""
The registry of Taubyte services and the built-in shapes.

A service factory has the signature C{(capabilities, config, reactor) ->
IService}, declares with L{needs} the capabilities (interfaces of
L{tau.interfaces}) it uses, and gets only those: never the node.  It is
named here as C{"module:function"} so that nothing is imported until a node
needs it.  A service name Taubyte knows but this build does not provide yet
is listed in L{KNOWN} only: a shape that names it is refused, never ignored.
"""

from importlib import import_module

# Every service of a Taubyte cloud.
KNOWN = ("auth", "gateway", "hoarder", "monkey", "patrick", "seer", "substrate", "tns")

# The services this build provides: name -> "module:factory".
FACTORIES = {
    "auth": "tau.services.auth.service:serviceFactory",
    "gateway": "tau.services.gateway.service:serviceFactory",
    "hoarder": "tau.services.hoarder.service:serviceFactory",
    "patrick": "tau.services.patrick.service:serviceFactory",
    "monkey": "tau.services.monkey.service:serviceFactory",
    "seer": "tau.services.seer.service:serviceFactory",
    "substrate": "tau.services.substrate.service:serviceFactory",
    "tns": "tau.services.tns.service:serviceFactory",
}

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


class CapabilityNotDeclared(LookupError):
    """
    A service asked for a capability its factory did not declare.
    """


def needs(*interfaces):
    """
    Declare the capabilities (interfaces) a service factory uses.
    """

    def declare(factory):
        factory.needs = tuple(interfaces)
        return factory

    return declare


class Capabilities:
    """
    What a node offers its services: a provider per interface.
    C{capabilities[IHost]} is the provider; L{only} gives a service the
    ones its factory declared.
    """

    def __init__(self, providers):
        self._providers = dict(providers)

    def __getitem__(self, interface):
        if interface not in self._providers:
            raise CapabilityNotDeclared(f"{interface.__name__} was not declared by this service's factory")
        return self._providers[interface]

    def __contains__(self, interface):
        return interface in self._providers

    def only(self, interfaces):
        """
        The capabilities among C{interfaces}, and no other.

        @raise LookupError: when the node offers one of them not.
        """
        missing = [i.__name__ for i in interfaces if i not in self._providers]
        if missing:
            raise LookupError(f"this node offers no {', '.join(missing)}")
        return Capabilities({i: self._providers[i] for i in interfaces})
