"""
The patrick service: git push events become CI/CD jobs.

A push webhook (C{POST /github/<hook>}, GitHub's format, signed with the
hook's secret that auth keeps) makes a L{job.Job} with a deterministic id;
jobs are kept in the replicated kvdb and queued so that exactly one monkey
takes each; monkeys report C{done} or C{failed} with the CIDs of their logs
and artefacts.  Served on L{PROTOCOL} with Taubyte's C{patrick} command.

Modules: L{job} (the job record and its encodings), L{client} (what monkeys,
the control API and dream use).
"""

PROTOCOL = "/patrick/v1"
