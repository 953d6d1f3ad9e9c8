// A js-libp2p node with @libp2p/circuit-relay-v2, for tau's relay interop
// tests (tests/relay/test_interop.py). Same JSON-lines protocol as peer.mjs
// (tests/interop/jspeer.py drives both): requests {"id", "cmd", ...} on stdin,
// replies {"id", "ok", ...} and events {"event", ...} on stdout, logs on stderr.
// Run as `node --import ./polyfill.mjs relay.mjs [options]`.
//
// Options:
//   --listen ADDR          listen multiaddr, repeatable (default
//                          /ip4/127.0.0.1/tcp/0); ADDR/p2p-circuit reserves a
//                          slot on the relay at ADDR
//   --relay-server         run circuitRelayServer (hop)
//   --relay-data BYTES     its data limit per relayed connection (js default 131072)
//   --relay-duration MS    its duration limit in milliseconds (js default 120000)
//   --no-relay-limit       no limits at all on relayed connections
//
// Commands: info, dial {addr}, echo {addr|peer, bytes, streams}, ping {addr|peer},
// connections, reservations (relay side), stop. Echo and ping run on limited
// (relayed) connections too.

import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify, identifyPush } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { emit, logger, serveCommands } from './control.mjs'
import { echoOverStream } from './echo.mjs'

const ECHO_PROTOCOL = '/tau/echo/1.0.0'
const MAX_ECHO_BYTES = 64 * 1024 * 1024
const MAX_STREAMS = 64

const log = logger('relay.mjs')

const { values: opts } = parseArgs({
  options: {
    listen: { type: 'string', multiple: true },
    'relay-server': { type: 'boolean' },
    'relay-data': { type: 'string' },
    'relay-duration': { type: 'string' },
    'no-relay-limit': { type: 'boolean' }
  },
  strict: true
})

const services = { identify: identify(), identifyPush: identifyPush(), ping: ping() }
if (opts['relay-server']) {
  const reservations = { maxReservations: 64 }
  if (opts['no-relay-limit']) reservations.applyDefaultLimit = false
  if (opts['relay-data'] != null) reservations.defaultDataLimit = BigInt(opts['relay-data'])
  if (opts['relay-duration'] != null) reservations.defaultDurationLimit = Number(opts['relay-duration'])
  services.relay = circuitRelayServer({ reservations })
}

const node = await createLibp2p({
  addresses: { listen: opts.listen ?? ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp(), circuitRelayTransport()],
  connectionEncrypters: [tls(), noise()],
  streamMuxers: [yamux()],
  // js-libp2p pings every connection every 10 s and aborts it when a ping
  // takes longer than an adaptive timeout (5 s at least), or when the next
  // ping starts while one is still out: on a loaded machine a ping queued
  // behind the echo streams' data takes longer, and the connection was cut
  // mid-test.  The pings still go out (tau answers them); a dead
  // connection still ends with TCP.
  connectionMonitor: { abortConnectionOnPingFailure: false },
  connectionManager: { inboundConnectionThreshold: 1e6, maxIncomingPendingConnections: 256 },
  services
})

// /tau/echo/1.0.0: echo until the remote half-closes, then close (also on
// limited connections).
function handleEcho (stream) {
  stream.addEventListener('message', (evt) => {
    try {
      if (!stream.send(evt.data)) {
        stream.pause()
        stream.onDrain({ signal: AbortSignal.timeout(60_000) }).then(() => {
          try { stream.resume() } catch (err) { if (err.name !== 'StreamStateError') stream.abort(err) }
        }, (err) => { stream.abort(err) })
      }
    } catch (err) {
      stream.abort(err)
    }
  })
  const finish = () => {
    stream.close({ signal: AbortSignal.timeout(60_000) }).catch((err) => { stream.abort(err) })
  }
  if (stream.readableEnded) finish()
  else stream.addEventListener('end', finish)
}
await node.handle(ECHO_PROTOCOL, handleEcho, { runOnLimitedConnection: true, maxInboundStreams: MAX_STREAMS })

node.addEventListener('connection:open', (evt) => {
  const c = evt.detail
  emit({ event: 'connection:open', peer: c.remotePeer.toString(), remoteAddr: c.remoteAddr.toString(), limited: c.limits != null })
})
node.addEventListener('self:peer:update', () => {
  emit({ event: 'addrs', addrs: node.getMultiaddrs().map(String) })
})

function target (args) {
  if (args.addr != null) return multiaddr(args.addr)
  if (args.peer != null) return peerIdFromString(args.peer)
  throw new Error('need addr or peer')
}

function describe (c) {
  return {
    peer: c.remotePeer.toString(),
    remoteAddr: c.remoteAddr.toString(),
    direction: c.direction,
    encryption: c.encryption,
    multiplexer: c.multiplexer,
    limited: c.limits != null,
    limits: c.limits == null ? null : { bytes: c.limits.bytes?.toString() ?? null, seconds: c.limits.seconds ?? null }
  }
}

// The connection to use: a new one for an address, else an open one (js would
// dial again, and over the same relay fail with "Duplicate multiaddr
// connection", when the open one is limited).
async function connectionTo (args, signal) {
  if (args.addr != null) return node.dial(multiaddr(args.addr), { signal })
  if (args.peer == null) throw new Error('need addr or peer')
  const open = node.getConnections(peerIdFromString(args.peer))
  if (open.length > 0) return open[0]
  return node.dial(peerIdFromString(args.peer), { signal })
}

async function echoOnce (conn, data, signal) {
  const stream = await conn.newStream(ECHO_PROTOCOL, { signal, runOnLimitedConnection: true })
  await echoOverStream(stream, data, signal)
}

const commands = {
  info: async () => ({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), protocols: node.getProtocols() }),
  dial: async (args, signal) => describe(await node.dial(target(args), { signal })),
  ping: async (args, signal) => ({ rtt: await node.services.ping.ping(target(args), { signal, runOnLimitedConnection: true }) }),
  echo: async (args, signal) => {
    const bytes = args.bytes ?? 1024
    const streams = args.streams ?? 1
    if (!(bytes >= 0 && bytes <= MAX_ECHO_BYTES)) throw new Error(`bytes must be 0..${MAX_ECHO_BYTES}`)
    if (!(streams >= 1 && streams <= MAX_STREAMS)) throw new Error(`streams must be 1..${MAX_STREAMS}`)
    const conn = await connectionTo(args, signal)
    const started = performance.now()
    await Promise.all(Array.from({ length: streams }, () => echoOnce(conn, randomBytes(bytes), signal)))
    return { bytes, streams, elapsedMs: performance.now() - started, limited: conn.limits != null }
  },
  connections: async () => ({ connections: node.getConnections().map(describe) }),
  reservations: async () => {
    const relay = node.services.relay
    if (relay == null) throw new Error('not a relay (start with --relay-server)')
    return { peers: [...relay.reservations.keys()].map(String) }
  }
}

serveCommands(node, commands, log)

emit({ event: 'ready', peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), protocols: node.getProtocols() })
log('ready', node.peerId.toString(), node.getMultiaddrs().map(String).join(' '))
