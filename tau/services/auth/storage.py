"""
Every read and write auth makes to the replicated key/value store, in one
place: the database C{auth}, CBOR values.

Keys (text, as Taubyte lays them out where it has them):

    /projects/<id>                  {id, name, provider, config, code}
    /repositories/<provider>/<id>   {id, provider, project, fullname, ssh, key*, token*, hook}
    /hooks/<id>                     {id, provider, github_id, secret*, repository}
    /acme/<fqdn>, /acme-static/<fqdn>   a sealed certificate (PEM chain and key)
    /acme-cache/<key>               sealed bytes
    /tokens/<sha256 of token>       {name, repositories}   (local provider)
    /hosted/<id>                    {id, fullname, owner}  (a repository the cloud hosts)

(* sealed: see L{tau.services.auth.secrets}.)
"""

import cbor2

DATABASE = "auth"
#: the most ids one list answers
MAX_LIST = 10_000


class Storage:
    """
    @param kvdb: has C{open(name)}, C{get(db, key)}, C{list(db, prefix,
        limit, values)}, C{put(db, key, value)}, C{delete(db, key)} (bytes
        keys and values), as L{tau.kvdb.service.KVDBService}.
    """

    def __init__(self, kvdb, database=DATABASE):
        self.kvdb = kvdb
        self.database = database

    async def open(self):
        """
        Open the service's database: written by the nodes of the cloud
        that run auth (L{tau.interfaces.IKVDB.serviceDatabase}); its full
        name (C{NAME@GENESIS}) is used from then on.
        """
        await self.kvdb.whenReady()
        replica = await self.kvdb.serviceDatabase("auth", self.database)
        self.database = replica.name

    async def getRaw(self, key):
        return await self.kvdb.get(self.database, key.encode("utf-8"))

    async def putRaw(self, key, value):
        await self.kvdb.put(self.database, key.encode("utf-8"), value)

    async def get(self, key):
        """
        The record at C{key}, or None.
        """
        raw = await self.getRaw(key)
        return None if raw is None else cbor2.loads(raw)

    async def put(self, key, record):
        await self.putRaw(key, cbor2.dumps(record))

    async def delete(self, key):
        await self.kvdb.delete(self.database, key.encode("utf-8"))

    async def names(self, prefix, limit=MAX_LIST):
        """
        What follows C{prefix} in the keys that start with it, in order.
        """
        keys = await self.kvdb.list(self.database, prefix.encode("utf-8"), limit, False)
        return [k.decode("utf-8")[len(prefix):] for k in keys]

    async def records(self, prefix, limit=MAX_LIST):
        """
        C{[(name, record)]} of the keys that start with C{prefix}.
        """
        rows = await self.kvdb.list(self.database, prefix.encode("utf-8"), limit, True)
        return [(k.decode("utf-8")[len(prefix):], cbor2.loads(v)) for k, v in rows]
