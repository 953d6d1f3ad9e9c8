// A Taubyte command-stream client (go's p2p/streams/command), written from
// ../../../../shared/specs/taubyte-streams.md: one stream per exchange; the
// command is one data frame (14-byte little-endian header: magic 01ec,
// version 1, type 0, int64 length, channel 0) holding the CBOR map
// {16: name, 64: body}; the answer is one data frame holding a map, null or
// {"error": text}; the client then resets the stream.
import { decode, encode } from 'cborg'

const MAGIC = [0x01, 0xec]
const VERSION = 1
const HEADER = 14
const MAX_ANSWER = 16 * 1024 * 1024

export function frame (payload, type = 0) {
  const out = new Uint8Array(HEADER + payload.byteLength)
  const view = new DataView(out.buffer)
  out[0] = MAGIC[0]
  out[1] = MAGIC[1]
  view.setUint16(2, VERSION, true)
  out[4] = type
  view.setBigInt64(5, BigInt(payload.byteLength), true)
  out[13] = 0
  out.set(payload, HEADER)
  return out
}

export function commandFrame (name, body) {
  return frame(encode(new Map([[16, name], [64, body ?? null]])))
}

// the first frame of `chunks` (Uint8Arrays): {type, payload}
function parseFrame (buf) {
  if (buf.byteLength < HEADER) return null
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  if (buf[0] !== MAGIC[0] || buf[1] !== MAGIC[1]) throw new Error(`bad magic ${buf[0].toString(16)}${buf[1].toString(16)}`)
  if (view.getUint16(2, true) !== VERSION) throw new Error(`bad version ${view.getUint16(2, true)}`)
  const length = view.getBigInt64(5, true)
  if (length < 0n || length > BigInt(MAX_ANSWER)) throw new Error(`bad frame length ${length}`)
  const n = Number(length)
  if (buf.byteLength < HEADER + n) return null
  return { type: buf[4], payload: buf.subarray(HEADER, HEADER + n) }
}

// Send one command on a new stream of `protocol` to `target`; the answer
// (an object or null), or throws with the service's error text.
export async function sendCommand (node, target, protocol, name, body, signal, raw) {
  const stream = await node.dialProtocol(target, protocol, { signal })
  const onAbort = () => { stream.abort(new Error(`${protocol} ${name} timed out`)) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    stream.send(raw ?? commandFrame(name, body))
    let buf = new Uint8Array(0)
    for await (const chunk of stream) {
      const b = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      const next = new Uint8Array(buf.byteLength + b.byteLength)
      next.set(buf)
      next.set(b, buf.byteLength)
      buf = next
      const f = parseFrame(buf)
      if (f != null) {
        if (f.type !== 0) throw new Error(`the service closed the stream: ${new TextDecoder().decode(f.payload)}`)
        const answer = decode(f.payload)
        if (answer != null && typeof answer === 'object' && 'error' in answer) {
          return { error: String(answer.error) }
        }
        return { answer }
      }
    }
    throw new Error(`the stream ended after ${buf.byteLength} bytes, before a whole frame`)
  } finally {
    signal.removeEventListener('abort', onAbort)
    stream.abort(new Error('exchange done'))
  }
}
