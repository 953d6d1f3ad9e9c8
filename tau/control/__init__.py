"""
The local control API: HTTP + JSON on loopback, in the manner of kubo's
C{/api/v0}.  L{tau.control.routes} holds the commands, L{tau.control.server}
serves them, L{tau.control.client} calls them for the CLI.
"""
