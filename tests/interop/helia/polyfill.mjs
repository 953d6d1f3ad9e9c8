// Loaded with `node --import ./polyfill.mjs peer.mjs`.
// js-libp2p 3.x (it-queue, mortice, @libp2p/utils, yamux, noise) calls
// Promise.withResolvers, which Node only has from 22 on; this machine runs 20.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((a, b) => { resolve = a; reject = b })
    return { promise, resolve, reject }
  }
}
