// One js-libp2p node driven by JSON lines on stdin, answering JSON lines on
// stdout; everything else (libp2p's DEBUG output, our own log lines) goes to
// stderr. Run as `node --import ./polyfill.mjs peer.mjs [options]`; the Python
// side is tests/interop/jspeer.py.
//
// Options (argv, or the env variable in brackets):
//   --listen ADDR        listen multiaddr, repeatable (TAU_JS_LISTEN, comma
//                        separated); default /ip4/127.0.0.1/tcp/0; "none" = no
//                        listener (a pure dialer)
//   --encrypter LIST     "tls" (default), "noise", "tls,noise" or "noise,tls";
//                        order = dial preference (TAU_JS_ENCRYPTER)
//   --swarm-key PATH     PSK v1 swarm key file -> @libp2p/pnet (TAU_JS_SWARM_KEY)
//   --private-key HEX    libp2p protobuf-encoded private key (TAU_JS_PRIVATE_KEY)
//   --key-type TYPE      Ed25519 (default), secp256k1, ECDSA, RSA: type of the
//                        generated key when no --private-key is given
//   --dht                run @libp2p/kad-dht on /ipfs/kad/1.0.0 in server mode,
//                        keeping loopback addresses (TAU_JS_DHT=1)
//   --pubsub             run @libp2p/gossipsub (TAU_JS_PUBSUB=1): commands
//                        subscribe/unsubscribe/publish/pubsubPeers, events
//                        "pubsub:message"
//
// Requests:  {"id": 1, "cmd": "dial", "addr": "/ip4/.../p2p/..."}
// Replies:   {"id": 1, "ok": true, ...} or {"id": 1, "ok": false, "error": "..."}
// Events:    {"event": "ready" | "identify" | "connection:open" | "connection:close", ...}
// Every command accepts "timeoutMs" (default 30000).

import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { identify, identifyPush } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { emit, logger, serveCommands } from './control.mjs'
import { BLOCK, bufOf, echoOverStream } from './echo.mjs'
import { sendCommand } from './taubyte.mjs'
import { CID } from 'multiformats/cid'

export const ECHO_PROTOCOL = '/tau/echo/1.0.0'
// The perf protocol (libp2p/specs perf/perf.md). @libp2p/perf is not
// published on the npm registry, so client and server live here.
export const PERF_PROTOCOL = '/perf/1.0.0'
const MAX_ECHO_STREAMS = 1024
const MAX_ECHO_BYTES = 256 * 1024 * 1024
const MAX_PERF_BYTES = 64 * 1024 * 1024 * 1024

const log = logger('peer.mjs')

function hex (buf) {
  return Buffer.from(buf).toString('hex')
}


// ---------------------------------------------------------------- options

const { values: opts } = parseArgs({
  options: {
    listen: { type: 'string', multiple: true },
    encrypter: { type: 'string' },
    'swarm-key': { type: 'string' },
    'private-key': { type: 'string' },
    'key-type': { type: 'string' },
    dht: { type: 'boolean' },
    pubsub: { type: 'boolean' }
  },
  strict: true
})

const env = process.env
let listen = opts.listen ?? (env.TAU_JS_LISTEN != null ? env.TAU_JS_LISTEN.split(',') : ['/ip4/127.0.0.1/tcp/0'])
if (listen.length === 1 && listen[0] === 'none') listen = []
const encrypterNames = (opts.encrypter ?? env.TAU_JS_ENCRYPTER ?? 'tls').split(',').map(s => s.trim()).filter(Boolean)
const swarmKeyPath = opts['swarm-key'] ?? env.TAU_JS_SWARM_KEY
const privateKeyHex = opts['private-key'] ?? env.TAU_JS_PRIVATE_KEY
const keyType = opts['key-type'] ?? 'Ed25519'
const withDHT = opts.dht ?? (env.TAU_JS_DHT === '1')
const withPubsub = opts.pubsub ?? (env.TAU_JS_PUBSUB === '1')

const encrypters = encrypterNames.map(name => {
  if (name === 'tls') return tls()
  if (name === 'noise') return noise()
  throw new Error(`unknown encrypter ${name} (tls or noise)`)
})
if (encrypters.length === 0) throw new Error('no encrypter')

const privateKey = privateKeyHex != null
  ? privateKeyFromProtobuf(Buffer.from(privateKeyHex, 'hex'))
  : await generateKeyPair(keyType)

const config = {
  privateKey,
  addresses: { listen },
  transports: [tcp()],
  connectionEncrypters: encrypters,
  streamMuxers: [yamux()],
  // js-libp2p pings every connection every 10 s and aborts it when a ping
  // takes longer than an adaptive timeout (5 s at least), or when the next
  // ping starts while one is still out: on a loaded machine a ping queued
  // behind the echo streams' data takes longer, and the connection was cut
  // mid-test.  The pings still go out (tau answers them); a dead
  // connection still ends with TCP.
  connectionMonitor: { abortConnectionOnPingFailure: false },
  connectionManager: {
    // defaults are 5 inbound connections/s per host and 10 pending upgrades,
    // too few for loopback stress tests
    inboundConnectionThreshold: 1e6,
    maxIncomingPendingConnections: 256,
    maxConnections: 1024,
    dialTimeout: 10_000
  },
  services: {
    identify: identify(),
    identifyPush: identifyPush(),
    ping: ping()
  }
}
if (withDHT) {
  config.services.dht = kadDHT({
    protocol: '/ipfs/kad/1.0.0',
    clientMode: false,
    peerInfoMapper: passthroughMapper,
    allowQueryWithZeroPeers: true
  })
}
if (withPubsub) {
  config.services.pubsub = gossipsub({
    allowPublishToZeroTopicPeers: true,
    // loopback tests run many peers on one IP
    scoreParams: { IPColocationFactorWhitelist: new Set(['127.0.0.1']) }
  })
}
if (swarmKeyPath != null) {
  config.connectionProtector = preSharedKey({ psk: readFileSync(swarmKeyPath) })
}

const node = await createLibp2p(config)

if (withPubsub) {
  node.services.pubsub.addEventListener('message', (evt) => {
    const m = evt.detail
    emit({
      event: 'pubsub:message',
      topic: m.topic,
      data: hex(m.data),
      from: m.from?.toString() ?? null,
      seqno: m.sequenceNumber != null ? m.sequenceNumber.toString(16).padStart(16, '0') : null
    })
  })
}

// ---------------------------------------------------------------- servers

// /tau/echo/1.0.0: echo everything until the remote half-closes, then close.
// Backpressure: pause reading while our send buffer is full.
function handleEcho (stream) {
  stream.addEventListener('message', (evt) => {
    try {
      if (!stream.send(evt.data)) {
        stream.pause()
        // By the time the buffer drains the remote may have ended and the
        // stream be closing: then there is nothing left to resume.
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

// /perf/1.0.0 server: read a big-endian u64 N, read until EOF, send N bytes, close.
async function handlePerf (stream) {
  const block = new Uint8Array(BLOCK)
  const signal = AbortSignal.timeout(600_000)
  try {
    const header = []
    let headerLen = 0
    for await (const chunk of stream) {
      if (headerLen < 8) {
        const b = bufOf(chunk)
        header.push(b.subarray(0, 8 - headerLen))
        headerLen += Math.min(b.byteLength, 8 - headerLen)
      }
    }
    if (headerLen < 8) throw new Error('perf: stream ended before the 8-byte header')
    let toSend = Number(Buffer.concat(header).readBigUInt64BE(0))
    if (toSend > MAX_PERF_BYTES) throw new Error(`perf: refusing to send ${toSend} bytes`)
    while (toSend > 0) {
      const n = Math.min(BLOCK, toSend)
      toSend -= n
      if (!stream.send(block.subarray(0, n))) await stream.onDrain({ signal })
    }
    await stream.close({ signal })
  } catch (err) {
    log('perf server:', err.message)
    stream.abort(err)
  }
}

await node.handle(ECHO_PROTOCOL, handleEcho, { maxInboundStreams: MAX_ECHO_STREAMS, maxOutboundStreams: MAX_ECHO_STREAMS })
await node.handle(PERF_PROTOCOL, (stream) => { void handlePerf(stream) }, { maxInboundStreams: 64, maxOutboundStreams: 64 })

// ---------------------------------------------------------------- identify tracking

const identified = new Set() // connection ids whose identify (by us) finished
const identifyWaiters = new Map() // connection id -> [resolve]

node.addEventListener('peer:identify', (evt) => {
  const result = evt.detail
  const id = result.connection.id
  identified.add(id)
  for (const resolve of identifyWaiters.get(id) ?? []) resolve()
  identifyWaiters.delete(id)
  emit({
    event: 'identify',
    peer: result.peerId.toString(),
    connection: id,
    protocols: result.protocols,
    listenAddrs: result.listenAddrs.map(String),
    agentVersion: result.agentVersion
  })
})
node.addEventListener('connection:open', (evt) => {
  const c = evt.detail
  emit({ event: 'connection:open', peer: c.remotePeer.toString(), connection: c.id, direction: c.direction, remoteAddr: c.remoteAddr.toString() })
})
node.addEventListener('connection:close', (evt) => {
  const c = evt.detail
  identified.delete(c.id)
  for (const resolve of identifyWaiters.get(c.id) ?? []) resolve()
  identifyWaiters.delete(c.id)
  emit({ event: 'connection:close', peer: c.remotePeer.toString(), connection: c.id })
})

function waitIdentify (conn, signal) {
  if (identified.has(conn.id)) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const list = identifyWaiters.get(conn.id) ?? []
    list.push(resolve)
    identifyWaiters.set(conn.id, list)
    signal.addEventListener('abort', () => { reject(new Error(`identify of ${conn.remotePeer} not done in time`)) }, { once: true })
  }).then(() => {
    if (!identified.has(conn.id)) throw new Error('connection closed before identify completed')
  })
}

// ---------------------------------------------------------------- commands

function target (args) {
  if (args.addr != null) return multiaddr(args.addr)
  if (args.peer != null) return peerIdFromString(args.peer)
  throw new Error('need addr or peer')
}

function describeConnection (c) {
  return {
    connection: c.id,
    peer: c.remotePeer.toString(),
    remoteAddr: c.remoteAddr.toString(),
    direction: c.direction,
    status: c.status,
    encryption: c.encryption,
    multiplexer: c.multiplexer,
    streams: c.streams.map(s => ({ id: s.id, protocol: s.protocol, direction: s.direction }))
  }
}

async function cmdDial (args, signal) {
  const started = performance.now()
  const conn = await node.dial(target(args), { signal, force: args.force === true })
  const dialMs = performance.now() - started
  let identifyMs = null
  if (args.waitIdentify !== false) {
    await waitIdentify(conn, signal)
    identifyMs = performance.now() - started
  }
  return { ...describeConnection(conn), dialMs, identifyMs }
}

async function cmdPing (args, signal) {
  const rtt = await node.services.ping.ping(target(args), { signal })
  return { rtt }
}

async function cmdPeerInfo (args) {
  const peerId = peerIdFromString(args.peer)
  let peer
  try {
    peer = await node.peerStore.get(peerId)
  } catch (err) {
    if (err.name === 'NotFoundError') return { known: false }
    throw err
  }
  const text = (k) => peer.metadata.has(k) ? Buffer.from(peer.metadata.get(k)).toString('utf8') : null
  const publicKey = peer.id.publicKey
  return {
    known: true,
    peer: peer.id.toString(),
    protocols: [...peer.protocols].sort(),
    addrs: peer.addresses.map(a => a.multiaddr.toString()),
    certifiedAddrs: peer.addresses.filter(a => a.isCertified).map(a => a.multiaddr.toString()),
    agentVersion: text('AgentVersion'),
    protocolVersion: text('ProtocolVersion'),
    publicKey: publicKey != null ? hex(publicKeyToProtobuf(publicKey)) : null,
    keyType: publicKey?.type ?? null,
    hasPeerRecord: peer.peerRecordEnvelope != null
  }
}

// Write `data` to a fresh echo stream, half-close, read everything back.
async function echoOnce (tgt, data, signal) {
  const stream = await node.dialProtocol(tgt, ECHO_PROTOCOL, { signal, maxOutboundStreams: MAX_ECHO_STREAMS })
  await echoOverStream(stream, data, signal)
}

async function cmdEcho (args, signal) {
  const streams = args.streams ?? 1
  const bytes = args.bytes ?? 1024
  if (!(streams >= 1 && streams <= MAX_ECHO_STREAMS)) throw new Error(`streams must be 1..${MAX_ECHO_STREAMS}`)
  if (!(bytes >= 0 && bytes <= MAX_ECHO_BYTES)) throw new Error(`bytes must be 0..${MAX_ECHO_BYTES}`)
  let tgt = target(args)
  // an address is dialled once; all streams then share that connection
  if (args.addr != null) tgt = (await node.dial(tgt, { signal })).remotePeer
  const payloads = Array.from({ length: streams }, () => randomBytes(bytes))
  const started = performance.now()
  await Promise.all(payloads.map(p => echoOnce(tgt, p, signal)))
  return { streams, bytes, totalBytes: streams * bytes, elapsedMs: performance.now() - started }
}

// /perf/1.0.0 client. upload time = stream open until the server starts its
// answer (it reads to EOF first); download time = first to last answer byte.
async function cmdPerf (args, signal) {
  const upload = args.upload ?? 0
  const download = args.download ?? 0
  if (!(upload >= 0 && upload <= MAX_PERF_BYTES && download >= 0 && download <= MAX_PERF_BYTES)) throw new Error('bad perf sizes')
  const conn = await node.dial(target(args), { signal, force: args.newConnection === true })
  const stream = await conn.newStream(PERF_PROTOCOL, { signal })
  const onAbort = () => { stream.abort(new Error('perf timed out')) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    const block = new Uint8Array(BLOCK)
    const header = Buffer.alloc(8)
    header.writeBigUInt64BE(BigInt(download))
    const t0 = performance.now()
    let tFirst = null
    let received = 0
    const reading = (async () => {
      for await (const chunk of stream) {
        if (tFirst == null) tFirst = performance.now()
        received += chunk.byteLength
      }
    })()
    stream.send(header)
    let left = upload
    while (left > 0) {
      const n = Math.min(BLOCK, left)
      left -= n
      if (!stream.send(block.subarray(0, n))) await stream.onDrain({ signal })
    }
    await stream.close({ signal })
    await reading
    const tEnd = performance.now()
    if (tFirst == null) tFirst = tEnd
    if (received !== download) throw new Error(`perf: expected ${download} bytes, received ${received}`)
    return {
      uploadBytes: upload,
      uploadSeconds: (tFirst - t0) / 1000,
      downloadBytes: received,
      downloadSeconds: (tEnd - tFirst) / 1000,
      totalSeconds: (tEnd - t0) / 1000,
      encryption: conn.encryption,
      multiplexer: conn.multiplexer
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

async function cmdHangup (args, signal) {
  await node.hangUp(target(args), { signal })
  return {}
}

// DHT commands (need --dht). CIDs are given as text; peers as peer id text.
function dht () {
  if (node.services.dht == null) throw new Error('this peer runs no DHT (start it with --dht)')
  return node.services.dht
}

async function cmdDhtProvide (args, signal) {
  await node.contentRouting.provide(CID.parse(args.cid), { signal })
  return {}
}

async function cmdDhtFindProviders (args, signal) {
  const providers = []
  for await (const p of node.contentRouting.findProviders(CID.parse(args.cid), { signal })) {
    providers.push({ peer: p.id.toString(), addrs: p.multiaddrs.map(String) })
    if (providers.length >= (args.count ?? 20)) break
  }
  return { providers }
}

async function cmdDhtFindPeer (args, signal) {
  const info = await node.peerRouting.findPeer(peerIdFromString(args.peer), { signal })
  return { peer: info.id.toString(), addrs: info.multiaddrs.map(String) }
}

async function cmdDhtClosestPeers (args, signal) {
  const peers = []
  for await (const event of dht().getClosestPeers(peerIdFromString(args.peer).toMultihash().bytes, { signal })) {
    if (event.name === 'FINAL_PEER') peers.push(event.peer.id.toString())
  }
  return { peers }
}

async function cmdDhtRoutingTable () {
  const rt = dht().routingTable
  const peers = []
  for (const bucketPeer of rt.kb?.toIterable?.() ?? []) peers.push(bucketPeer.peerId.toString())
  return { size: rt.size, peers }
}

const commands = {
  dial: cmdDial,
  ping: cmdPing,
  peerInfo: cmdPeerInfo,
  echo: cmdEcho,
  // {peer|addr, protocol, command, body?, rawHex?}: one Taubyte command
  // exchange; {answer} or {error} (the service's error text)
  command: (args, signal) => sendCommand(node, target(args), args.protocol, args.command, args.body,
    signal, args.rawHex != null ? Buffer.from(args.rawHex, 'hex') : undefined),
  perf: cmdPerf,
  hangup: cmdHangup,
  dhtProvide: cmdDhtProvide,
  dhtFindProviders: cmdDhtFindProviders,
  dhtFindPeer: cmdDhtFindPeer,
  dhtClosestPeers: cmdDhtClosestPeers,
  dhtRoutingTable: cmdDhtRoutingTable,
  connections: async () => ({ connections: node.getConnections().map(describeConnection) }),
  subscribe: async (args) => { node.services.pubsub.subscribe(args.topic); return {} },
  unsubscribe: async (args) => { node.services.pubsub.unsubscribe(args.topic); return {} },
  publish: async (args) => {
    const result = await node.services.pubsub.publish(args.topic, Buffer.from(args.data, 'hex'))
    return { recipients: result.recipients.map(String) }
  },
  pubsubPeers: async (args) => ({
    subscribers: node.services.pubsub.getSubscribers(args.topic).map(String),
    mesh: node.services.pubsub.getMeshPeers(args.topic),
    peers: node.services.pubsub.getPeers().map(String)
  }),
  info: async () => ({
    peerId: node.peerId.toString(),
    addrs: node.getMultiaddrs().map(String),
    protocols: node.getProtocols(),
    privateKey: hex(privateKeyToProtobuf(privateKey))
  })
}

serveCommands(node, commands, log)

emit({
  event: 'ready',
  peerId: node.peerId.toString(),
  addrs: node.getMultiaddrs().map(String),
  protocols: node.getProtocols(),
  encrypters: encrypterNames,
  pnet: swarmKeyPath != null
})
log('ready', node.peerId.toString(), node.getMultiaddrs().map(String).join(' '))
