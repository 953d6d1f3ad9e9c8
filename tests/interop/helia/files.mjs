// A helia node with @helia/unixfs for tau's file interop tests
// (tests/bitswap/test_helia_files.py) and bench/bitswap.py.
//
//   node --import ./polyfill.mjs files.mjs serve-file <size> [<seed>|random]
//       adds <size> bytes with unixfs.addBytes (helia's defaults: CIDv1, raw
//       leaves, 256 KiB chunks, balanced) and prints
//       {"addr", "peerId", "cid", "size", "sha256", "ms"} on one line, then
//       serves until stdin closes.  The bytes are deterministic for a seed
//       (default "tau"): block i of 32 bytes is sha256(seed + ":" + i), the
//       same as tests/bitswap/test_helia_files.py's deterministicBytes.
//       "random" gives random bytes (faster, for benchmarks).
//   node --import ./polyfill.mjs files.mjs cat-file <maddr> <cid> [<timeout ms>]
//       dials <maddr>, reads the file with unixfs.cat, prints
//       {"ok": true, "size", "sha256", "dialMs", "ms"} (ms: the cat alone,
//       first want to last byte) and exits.
//
// No bootstrap peers, no delegated routing: only TCP to the addresses given.
import { createHash, randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { unixfs } from '@helia/unixfs'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { fail, serveUntilStdinEnds, start } from './node.mjs'

const [mode, ...args] = process.argv.slice(2)

export function deterministicBytes (size, seed) {
  const out = Buffer.allocUnsafe(size)
  for (let i = 0, off = 0; off < size; i++, off += 32) {
    const digest = createHash('sha256').update(`${seed}:${i}`).digest()
    digest.copy(out, off, 0, Math.min(32, size - off))
  }
  return out
}

if (mode === 'serve-file') {
  try {
    const size = Number(args[0] ?? 1024)
    const seed = args[1] ?? 'tau'
    const data = seed === 'random' ? randomBytes(size) : deterministicBytes(size, seed)
    const h = await start()
    const fs = unixfs(h)
    const started = Date.now()
    const cid = await fs.addBytes(data)
    const ms = Date.now() - started
    const addr = h.libp2p.getMultiaddrs()[0].toString()
    const sha256 = createHash('sha256').update(data).digest('hex')
    console.log(JSON.stringify({ ok: true, addr, peerId: h.libp2p.peerId.toString(), cid: cid.toString(), size, sha256, ms }))
    serveUntilStdinEnds(h)
  } catch (err) {
    fail(err)
  }
} else if (mode === 'cat-file') {
  try {
    const [addr, text, timeout] = args
    const h = await start()
    const fs = unixfs(h)
    const t0 = Date.now()
    await h.libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(10000) })
    const t1 = Date.now()
    const hash = createHash('sha256')
    let size = 0
    const signal = AbortSignal.timeout(Number(timeout ?? 60000))
    setMaxListeners(Infinity, signal)
    for await (const chunk of fs.cat(CID.parse(text), { signal })) {
      hash.update(chunk)
      size += chunk.length
    }
    const t2 = Date.now()
    console.log(JSON.stringify({ ok: true, size, sha256: hash.digest('hex'), dialMs: t1 - t0, ms: t2 - t1 }))
    await h.stop()
    process.exit(0)
  } catch (err) {
    fail(err)
  }
} else {
  console.error('usage: files.mjs serve-file <size> [<seed>|random] | cat-file <maddr> <cid> [<timeout ms>]')
  process.exit(2)
}
