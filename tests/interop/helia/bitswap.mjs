// A helia node for tau's bitswap interop tests (tests/bitswap/test_helia.py).
//
//   node --import ./polyfill.mjs bitswap.mjs serve <size> [<count>]
//       stores <count> (default 1) raw blocks of <size> random bytes, prints
//       {"addr", "peerId", "cids": [...]} on one line, serves until stdin closes.
//   node --import ./polyfill.mjs bitswap.mjs fetch <maddr> <cid>...
//       dials <maddr>, fetches every CID by bitswap, prints
//       {"ok": true, "blocks": [{"cid", "size", "sha256"}], "ms"} and exits.
//
// No bootstrap peers, no delegated routing, no autoTLS/UPnP/mDNS: only TCP to
// the addresses we are given (createHeliaLight + withLibp2pLight).
import { createHash, randomBytes } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { fail, serveUntilStdinEnds, start } from './node.mjs'

const [mode, ...args] = process.argv.slice(2)

async function collect (source) {
  const chunks = []
  for await (const chunk of source) chunks.push(chunk)
  return Buffer.concat(chunks)
}

const h = await start()
if (mode === 'serve') {
  const size = Number(args[0] ?? 1024)
  const count = Number(args[1] ?? 1)
  const cids = []
  for (let i = 0; i < count; i++) {
    const data = randomBytes(size)
    const cid = CID.createV1(raw.code, await sha256.digest(data))
    await h.blockstore.put(cid, data)
    cids.push(cid.toString())
  }
  const addr = h.libp2p.getMultiaddrs()[0].toString()
  console.log(JSON.stringify({ addr, peerId: h.libp2p.peerId.toString(), cids }))
  serveUntilStdinEnds(h)
} else if (mode === 'fetch') {
  const [addr, ...cids] = args
  const started = Date.now()
  try {
    await h.libp2p.dial(multiaddr(addr))
    const blocks = await Promise.all(cids.map(async (text) => {
      const cid = CID.parse(text)
      const data = await collect(h.blockstore.get(cid, { signal: AbortSignal.timeout(30000) }))
      return { cid: text, size: data.length, sha256: createHash('sha256').update(data).digest('hex') }
    }))
    console.log(JSON.stringify({ ok: true, blocks, ms: Date.now() - started }))
    await h.stop()
    process.exit(0)
  } catch (err) {
    fail(err)
  }
} else {
  console.error('usage: bitswap.mjs serve <size> [<count>] | fetch <maddr> <cid>...')
  process.exit(2)
}
