// CIDs that helia's importers give, for tau's CID parity test
// (tests/store/test_helia_cids.py).
//
//   node --import ./polyfill.mjs cids.mjs  < spec.json
//
// spec: {"files": [{"size": N, "seed": S}, ...],
//        "dirs": [{"name": D, "entries": [[path, size|null, seed], ...],
//                  "options": {...}, "blocks": true|false}, ...]}
//
// Each file and directory is imported twice, with default options:
//   "importer": ipfs-unixfs-importer 17 itself (CIDv1, raw leaves, 256 KiB
//               chunks, 174 links; kubo's `ipfs add --cid-version=1
//               --raw-leaves` gives the same);
//   "helia":    @helia/unixfs addByteStream / addAll (which override the
//               importer's chunker and layout: 1 MiB chunks, 1024 links).
// A directory entry with size null is an empty directory; directories are
// imported with wrapWithDirectory and "options" added (e.g. shardFanoutBits).
// With "blocks", every block the importer stored for that directory is
// returned too (base64), so tau can read helia's own DAG.
//
// Content is deterministic: the AES-128-CTR keystream (key: the first 16
// bytes of sha256(seed), IV: 16 zero bytes), which tau computes the same way.
//
// Prints one line {"ok": true, "files": [{"importer", "helia"}, ...],
// "dirs": {D: {"importer", "helia", "blocks"?}}, "ms"}.
import { createCipheriv, createHash } from 'node:crypto'
import { unixfs } from '@helia/unixfs'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { createHeliaLight } from 'helia'
import { importer } from 'ipfs-unixfs-importer'

const PIECE = 1 << 20

function keystream (seed) {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16)
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
}

// the bytes as pieces of at most 1 MiB
function * pieces (size, seed) {
  const cipher = keystream(seed)
  for (let left = size; left > 0; left -= PIECE) {
    yield cipher.update(Buffer.alloc(Math.min(PIECE, left)))
  }
}

function bytesOf (size, seed) {
  return size === 0 ? new Uint8Array(0) : Buffer.concat([...pieces(size, seed)])
}

async function readStdin () {
  const parts = []
  for await (const part of process.stdin) parts.push(part)
  return JSON.parse(Buffer.concat(parts).toString('utf8'))
}

async function lastOf (it) {
  let last
  for await (const x of it) last = x
  return last
}

function candidates (entries) {
  return entries.map(([path, size, seed]) =>
    size == null ? { path } : { path, content: bytesOf(size, seed) })
}

async function blocksOf (store) {
  const out = []
  for await (const { bytes } of store.getAll()) {
    const parts = []
    for await (const part of bytes) parts.push(part)
    out.push(Buffer.concat(parts).toString('base64'))
  }
  return out
}

try {
  const spec = await readStdin()
  const started = Date.now()
  const h = await createHeliaLight({ routers: [] })
  const fs = unixfs(h)
  const files = []
  for (const { size, seed } of spec.files ?? []) {
    const store = new MemoryBlockstore()
    const viaImporter = await lastOf(importer([{ content: pieces(size, seed) }], store))
    const viaHelia = await fs.addByteStream(pieces(size, seed))
    files.push({ importer: viaImporter.cid.toString(), helia: viaHelia.toString() })
  }
  const dirs = {}
  for (const { name, entries, options, blocks } of spec.dirs ?? []) {
    const opts = { wrapWithDirectory: true, ...(options ?? {}) }
    const store = new MemoryBlockstore()
    const viaImporter = await lastOf(importer(candidates(entries), store, opts))
    const viaHelia = await lastOf(fs.addAll(candidates(entries), opts))
    dirs[name] = { importer: viaImporter.cid.toString(), helia: viaHelia.cid.toString() }
    if (blocks) dirs[name].blocks = await blocksOf(store)
  }
  await h.stop()
  // exit only once the (large) line is written: a pipe is asynchronous
  process.stdout.write(JSON.stringify({ ok: true, files, dirs, ms: Date.now() - started }) + '\n', () => process.exit(0))
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: String(err?.stack ?? err) }))
  process.exit(1)
}
