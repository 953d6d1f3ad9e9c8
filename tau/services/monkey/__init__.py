"""
The monkey service: runs CI/CD jobs.

A monkey asks patrick for a job (C{dequeue}, every C{poll-interval}
seconds while idle: Taubyte's monkeys poll, there is no job topic), runs
it (one at a time: L{runner.JobRunner}: the repository's type, a clone
at the pushed commit, builds in the bubblewrap sandbox of
L{tau.build}, artefacts stored by CID and published to tns), checks
every C{lease-interval} seconds that the job is still its own
(C{isAssigned}, which refreshes the assignment) and reports C{done} or
C{failed} with the CIDs of its logs and artefacts.  It serves Taubyte's
C{job} command (C{list}, C{status}, C{cancel}) on L{PROTOCOL}.

Modules: L{config} (the C{monkey} section), L{clone} (git at a commit),
L{joblog} (a job's log), L{runner} (one job), L{stash} (hoarder),
L{service} (the loop, the command, the factory).
"""

PROTOCOL = "/monkey/v1"
