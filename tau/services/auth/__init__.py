"""
The auth service: projects, the repositories they are built from, their
webhooks and deploy keys, domain validation tokens and TLS certificates,
served on C{/auth/v1} (Taubyte's commands) and over a JSON HTTP API.

Modules: L{config} (the C{auth} config section), L{secrets} (encryption at
rest and node secrets), L{storage} (every kvdb call), L{providers} (who a
token is and what it reaches), L{core} (the records and the rules),
L{commands} (the p2p commands), L{web} (the HTTP API), L{hosting} (who
reads and pushes the git repositories the cloud hosts, served by
L{tau.githost} on C{git-listen}), L{certificates}
(TLS certificates by SNI name), L{service} (the service and L{makeAuth}),
L{client} (what other services use).
"""

PROTOCOL = "/auth/v1"
