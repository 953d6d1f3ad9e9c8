"""
Which kind of repository a job builds, decided as Taubyte's monkey decides
it (C{services/monkey/job.go}): by the repository's id, never by what the
repository holds.

 - id 0 names no repository: the job is an error;
 - id 1 is a job with nothing to build (a successful no-op);
 - the project's code repository is code, its config repository config;
 - any other is what tns says at C{repositories/<provider>/<id>/<P>/type}
   (3 library, 4 website), which the config compiler writes for the
   project's libraries and websites.
"""

from __future__ import annotations

import enum

from tau.project.indexes import LIBRARY_REPOSITORY, WEBSITE_REPOSITORY


class RepositoryType(enum.IntEnum):
    """
    Taubyte's C{repositorytype.Type}.
    """

    UNKNOWN = 0
    CONFIG = 1
    CODE = 2
    LIBRARY = LIBRARY_REPOSITORY
    WEBSITE = WEBSITE_REPOSITORY


#: The repository id of a job with nothing to build.
NOTHING_TO_BUILD = 1


class RepositoryTypeError(ValueError):
    """
    The job's repository has no type tau can build: why.
    """


def typeKey(provider, repoId, projectId):
    """
    The tns path of a library or website repository's type.
    """
    return ["repositories", provider.lower(), str(repoId), projectId, "type"]


def _number(value):
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


async def repositoryType(repoId, projectId, codeRepoId, configRepoId, fetch, provider="github"):
    """
    The L{RepositoryType} of repository C{repoId} of project C{projectId},
    or None when the job has nothing to build (id 1).

    @param codeRepoId: the project's code repository id (as auth keeps it).
    @param configRepoId: the project's config repository id.
    @param fetch: a coroutine function, C{fetch(path)} -> the tns object at
        C{path} or None (L{tau.services.tns.client.TNSClient.fetch}).
    @raise RepositoryTypeError: id 0, or tns knows no library or website
        of the project in this repository.
    """
    if type(repoId) is not int or repoId < 0:
        raise RepositoryTypeError(f"the job names no repository (id {repoId!r})")
    if repoId == 0:
        raise RepositoryTypeError("the job names no repository (id 0)")
    if repoId == NOTHING_TO_BUILD:
        return None
    if repoId == codeRepoId:
        return RepositoryType.CODE
    if repoId == configRepoId:
        return RepositoryType.CONFIG
    key = typeKey(provider, repoId, projectId)
    value = await fetch(key)
    number = _number(value)
    if number in (RepositoryType.LIBRARY, RepositoryType.WEBSITE):
        return RepositoryType(number)
    where = "/".join(key)
    if value is None:
        raise RepositoryTypeError(f"repository {repoId} is neither the code nor the config repository of project"
                                  f" {projectId}, and tns has no {where}")
    raise RepositoryTypeError(f"tns {where} holds {value!r}, not a library (3) or website (4) repository type")
