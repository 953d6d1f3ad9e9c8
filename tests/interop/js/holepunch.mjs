// A js-libp2p node with @libp2p/dcutr and the circuit relay transport, for
// tau's hole punching interop test (tests/interop/test_holepunch.py), run
// behind a NAT in a network namespace. Same JSON-lines protocol as peer.mjs
// (tests/interop/jspeer.py drives both). Run as
// `node --import ./polyfill.mjs holepunch.mjs [options]`.
//
// Options:
//   --listen ADDR        listen multiaddr, repeatable (default /ip4/0.0.0.0/tcp/0)
//   --local-port PORT    every TCP dial leaves from this port (libuv binds
//                        it with SO_REUSEADDR): the relay connection and the
//                        hole punch then share one NAT mapping, as go-libp2p's
//                        port reuse gives
//   --announce ADDR      an address appended to the announced ones (the
//                        router's public address and PORT: js only announces
//                        observed addresses that AutoNAT confirmed)
//
// Commands: info, dial {addr}, ping {peer}, connections.

import { parseArgs } from 'node:util'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { identify, identifyPush } from '@libp2p/identify'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { emit, logger, serveCommands } from './control.mjs'

const log = logger('holepunch.mjs')

const { values: opts } = parseArgs({
  options: {
    listen: { type: 'string', multiple: true },
    'local-port': { type: 'string' },
    announce: { type: 'string', multiple: true }
  },
  strict: true
})

const dialOpts = opts['local-port'] != null ? { localPort: Number(opts['local-port']) } : {}

const node = await createLibp2p({
  addresses: { listen: opts.listen ?? ['/ip4/0.0.0.0/tcp/0'], appendAnnounce: opts.announce ?? [] },
  transports: [tcp({ dialOpts }), circuitRelayTransport()],
  connectionEncrypters: [tls()],
  streamMuxers: [yamux()],
  services: { identify: identify(), identifyPush: identifyPush(), ping: ping(), dcutr: dcutr() }
})

function describe (c) {
  return {
    peer: c.remotePeer.toString(),
    remoteAddr: c.remoteAddr.toString(),
    direction: c.direction,
    status: c.status,
    limited: c.limits != null
  }
}

node.addEventListener('connection:open', (evt) => emit({ event: 'connection:open', ...describe(evt.detail) }))
node.addEventListener('connection:close', (evt) => emit({ event: 'connection:close', ...describe(evt.detail) }))

const commands = {
  info: async () => ({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), protocols: node.getProtocols() }),
  dial: async (args, signal) => describe(await node.dial(multiaddr(args.addr), { signal })),
  ping: async (args, signal) => ({ rtt: await node.services.ping.ping(peerIdFromString(args.peer), { signal, runOnLimitedConnection: true }) }),
  connections: async () => ({ connections: node.getConnections().map(describe) })
}

serveCommands(node, commands, log)

emit({ event: 'ready', peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), protocols: node.getProtocols() })
log('ready', node.peerId.toString(), node.getMultiaddrs().map(String).join(' '))
