// The JSON-lines control loop shared by peer.mjs and relay.mjs
// (tests/interop/jspeer.py drives both): requests {"id", "cmd", "timeoutMs"?,
// ...} on stdin, replies {"id", "ok", ...} and events {"event", ...} on
// stdout, logs on stderr.  "stop", end of stdin, SIGTERM/SIGINT and a closed
// stdout stop the node and exit.
import { createInterface } from 'node:readline'

const DEFAULT_TIMEOUT_MS = 30_000
const MAX_LINE = 1024 * 1024

export function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

export function logger (name) {
  return (...args) => { process.stderr.write(`[${name} ${process.pid}] ${args.join(' ')}\n`) }
}

// Answer `commands` ({cmd: async (args, signal) => result}) for `node` until
// told to stop.  A command that outlives its timeout is answered with an error.
export function serveCommands (node, commands, log) {
  let stopping = false
  async function shutdown (code) {
    if (stopping) return
    stopping = true
    const timer = setTimeout(() => { log('stop timed out'); process.exit(code) }, 10_000)
    try {
      await node.stop()
    } catch (err) {
      log('stop failed:', err.message)
    }
    clearTimeout(timer)
    process.exit(code)
  }

  async function handleLine (line) {
    let req
    try {
      req = JSON.parse(line)
    } catch (err) {
      emit({ id: null, ok: false, error: `bad JSON: ${err.message}` })
      return
    }
    const { id, cmd, timeoutMs, ...args } = req
    if (cmd === 'stop') {
      emit({ id, ok: true })
      await shutdown(0)
      return
    }
    const fn = commands[cmd]
    if (fn == null) {
      emit({ id, ok: false, error: `unknown command ${JSON.stringify(cmd)}` })
      return
    }
    const signal = AbortSignal.timeout(timeoutMs ?? DEFAULT_TIMEOUT_MS)
    const timedOut = new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => { reject(new Error(`${cmd} timed out after ${timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`)) }, { once: true })
    })
    timedOut.catch(() => {})
    try {
      const result = await Promise.race([fn(args, signal), timedOut])
      emit({ ...result, id, ok: true })
    } catch (err) {
      const detail = err?.errors != null ? ` (${err.errors.map(e => e.message).join('; ')})` : ''
      emit({ id, ok: false, error: `${err?.name ?? 'Error'}: ${err?.message ?? err}${detail}` })
    }
  }

  process.on('SIGTERM', () => { void shutdown(0) })
  process.on('SIGINT', () => { void shutdown(0) })
  // the controller went away (EPIPE on stdout): stop
  process.stdout.on('error', () => { void shutdown(0) })

  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
  rl.on('line', (line) => {
    if (line.length > MAX_LINE) {
      emit({ id: null, ok: false, error: 'line too long' })
      return
    }
    if (line.trim() === '') return
    handleLine(line).catch((err) => { log('command failed:', err.stack) })
  })
  // the controller went away: stop
  rl.on('close', () => { void shutdown(0) })
}
