"""
The patrick service: git push events become CI/CD jobs.

A push webhook (C{POST /github/<hook>}, GitHub's format, signed with the
hook's secret that auth keeps) makes a L{job.Job} with a deterministic id;
jobs are kept in the replicated kvdb and queued so that exactly one monkey
takes each; monkeys report C{done} or C{failed} with the CIDs of their logs
and artefacts.  Served on L{PROTOCOL} with Taubyte's C{patrick} command.

Modules: L{job} (the job record and its encodings), L{client} (what monkeys,
the control API and dream use), L{config} (the C{patrick} section),
L{storage} (the kvdb keys), L{members} (live patrick nodes, each job's
owner), L{lifecycle} (the owner's decisions: hand out, leases, retry,
timeouts), L{commands} (the C{patrick} command, forwarding to owners),
L{webhook} (signature and payload checks), L{web} (the HTTP API),
L{service} (the service and its factory).
"""

PROTOCOL = "/patrick/v1"
