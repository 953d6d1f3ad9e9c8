// The helia node that bitswap.mjs and files.mjs start, and what they share
// around it.  No bootstrap peers, no delegated routing, no autoTLS/UPnP/mDNS:
// only TCP to the addresses we are given (createHeliaLight + withLibp2pLight).
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { yamux } from '@libp2p/yamux'
import { createHeliaLight } from 'helia'

export async function start () {
  const h = withBitswap(withLibp2pLight(createHeliaLight({ routers: [] }), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [tls(), noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionManager: { inboundConnectionThreshold: 1e6, maxIncomingPendingConnections: 100 }
  }))
  await h.start()
  return h
}

// serve until the parent closes our stdin, then stop and exit
export function serveUntilStdinEnds (h) {
  process.stdin.resume()
  process.stdin.on('end', async () => { await h.stop(); process.exit(0) })
}

export function fail (err) {
  console.log(JSON.stringify({ ok: false, error: String(err?.stack ?? err) }))
  process.exit(1)
}
