// The echo exchange shared by peer.mjs and relay.mjs: write `data` to a
// stream in BLOCK pieces, half-close, read everything back and check it.

export const BLOCK = 64 * 1024

// Uint8Array or Uint8ArrayList -> Uint8Array
export function bufOf (data) {
  return data instanceof Uint8Array ? data : data.subarray()
}

export async function echoOverStream (stream, data, signal) {
  const onAbort = () => { stream.abort(new Error('echo timed out')) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    const chunks = []
    let received = 0
    const reading = (async () => {
      for await (const chunk of stream) {
        const b = bufOf(chunk)
        received += b.byteLength
        if (received > data.byteLength) throw new Error(`echo: got more than the ${data.byteLength} bytes sent`)
        chunks.push(b)
      }
    })()
    const writing = (async () => {
      for (let off = 0; off < data.byteLength; off += BLOCK) {
        if (!stream.send(data.subarray(off, off + BLOCK))) await stream.onDrain({ signal })
      }
      await stream.close({ signal })
    })()
    await Promise.all([reading, writing])
    const got = Buffer.concat(chunks, received)
    if (got.byteLength !== data.byteLength) throw new Error(`echo: sent ${data.byteLength} bytes, got ${got.byteLength} back`)
    if (!got.equals(data)) {
      let i = 0
      while (i < got.byteLength && got[i] === data[i]) i++
      throw new Error(`echo: data differs at offset ${i}`)
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
