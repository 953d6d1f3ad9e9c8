"""
Tor for a tau node: dialing C{/onion3} addresses through tor and publishing
the node as a v3 onion service (L{tau.tor.service}), with a tor launched by
the node or one already running (L{tau.tor.control}); the C{tor} config
section (L{tau.tor.config}).
"""
