"""
The C{tor} section of a node config.

    tor:
      enabled: false          # use Tor at all
      launch: true            # start a tor of our own (Debian's tor binary) ...
      control: ""             # ... or use a running one: its control port, an
                              #     endpoint string (tcp:127.0.0.1:9051, unix:/run/tor/control)
      onion: true             # publish the p2p listener as a v3 onion service
      port: 4242              # the onion service's port
      only: false             # reachable only through Tor: no clear-net listen or announce
      data-dir: ""            # the launched tor's DataDirectory (default ROOT/storage/<shape>/tor)
      binary: ""              # the tor binary to launch (default: tor on the PATH)
      timeout: 180            # seconds for tor to start and bootstrap, and for the onion to publish
      options: {}             # more torrc options for a launched tor (a list for repeated ones)
"""

import re

from tau.configsection import Section, isNumber, require

#: torrc option names: letters, digits and underscores (tor's own names).
OPTION_NAME = re.compile(r"^_{0,2}[A-Za-z][A-Za-z0-9_]{0,63}$")
#: torrc options a node config may give; each value at most this long.
MAX_OPTIONS = 64
MAX_OPTION_VALUE = 1024
#: What launching sets itself: a config may not give these.
RESERVED = frozenset({"datadirectory", "controlport", "socksport", "cookieauthentication", "pidfile", "__owningcontrollerprocess"})


def _optionValue(source, field, value):
    require(source, field, isinstance(value, (str, int)) and not isinstance(value, bool), "expected a string or a number")
    text = str(value)
    require(source, field, len(text) <= MAX_OPTION_VALUE and "\n" not in text and "\r" not in text,
            f"expected one line of at most {MAX_OPTION_VALUE} characters")
    return text


def _options(source, value):
    require(source, "tor.options", isinstance(value, dict), "expected a mapping of torrc option names to values")
    require(source, "tor.options", len(value) <= MAX_OPTIONS, f"expected at most {MAX_OPTIONS} options")
    out = {}
    for key, v in value.items():
        field = f"tor.options.{key}"
        require(source, field, isinstance(key, str) and OPTION_NAME.match(key) is not None, "expected a torrc option name")
        require(source, field, key.lower() not in RESERVED, "set by tau when it launches tor")
        if isinstance(v, list):
            require(source, field, 0 < len(v) <= MAX_OPTIONS, f"expected 1 to {MAX_OPTIONS} values")
            out[key] = [_optionValue(source, f"{field}[{i}]", item) for i, item in enumerate(v)]
        else:
            out[key] = _optionValue(source, field, v)
    return out


class TorSection(Section):
    """
    Tor: whether to launch a tor or use a running one, whether to publish
    the node as an onion service and to be reachable only through it.
    """

    name = "tor"
    defaults = {
        "enabled": False,
        "launch": True,
        "control": "",
        "onion": True,
        "port": 4242,
        "only": False,
        "data-dir": "",
        "binary": "",
        "timeout": 180.0,
        "options": {},
    }

    def clean(self, source, value):
        out = dict(value)
        for key in ("enabled", "launch", "onion", "only"):
            if key in value:
                require(source, f"tor.{key}", isinstance(value[key], bool), "expected true or false")
        for key in ("control", "data-dir", "binary"):
            if key in value:
                require(source, f"tor.{key}", isinstance(value[key], str), "expected a string")
        if "port" in value:
            v = value["port"]
            require(source, "tor.port", isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535,
                    "expected a port number 1-65535")
        if "timeout" in value:
            v = value["timeout"]
            require(source, "tor.timeout", isNumber(v) and 0 < v <= 3600, "expected a number of seconds above 0, at most 3600")
        if "control" in value and value["control"]:
            kind = value["control"].partition(":")[0]
            require(source, "tor.control", kind in ("tcp", "unix"), "expected a tcp: or unix: endpoint string")
        if "options" in value:
            out["options"] = _options(source, value["options"])
        return out

    def finish(self, source, fields, peerID):
        if fields["enabled"] and not fields["launch"]:
            require(source, "tor.control", bool(fields["control"]), "expected the control port of the running tor (launch is false)")
        return dict(fields)
