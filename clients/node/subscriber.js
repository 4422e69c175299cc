#!/usr/bin/env node
"use strict"
// Prints what `tracker serve` publishes: poses, skeletons and the status.
//
//   node subscriber.js [--publish tcp://127.0.0.1:5556] [--session ID] [--every N]
//                      [--frames] [--seconds S] [--json] [--check]
//
// Messages are two frames, [topic, MessagePack payload]; ZeroMQ filters on topic prefixes:
// "pose/" (every session) or "pose/<id>", "skeleton/...", "frame/...", "status". Subscribing
// to skeleton/ is also the request for the skeletons of sessions already running: the
// tracker answers every new subscription that covers them.
//
// --json prints one summary line at the end (SIGINT/SIGTERM or --seconds);
// --check also decodes every payload with msgpackr (a devDependency) and compares.

const zmq = require("zeromq")
const { DEFAULT_PUBLISH, decodeMessage } = require("./wire")

function parseArgs(argv) {
  const opts = { publish: DEFAULT_PUBLISH, session: "", every: 1, frames: false, seconds: 0,
    json: false, check: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`)
      return argv[++i]
    }
    if (a === "--publish") opts.publish = value()
    else if (a === "--session") opts.session = value()
    else if (a === "--every") opts.every = Number(value())
    else if (a === "--frames") opts.frames = true
    else if (a === "--seconds") opts.seconds = Number(value())
    else if (a === "--json") opts.json = true
    else if (a === "--check") opts.check = true
    else if (a === "-h" || a === "--help") {
      console.log("usage: node subscriber.js [--publish ADDR] [--session ID] [--every N] " +
        "[--frames] [--seconds S] [--json] [--check]")
      process.exit(0)
    } else fail(`unknown option ${a}`)
  }
  if (!(opts.every >= 1)) fail("--every must be >= 1")
  if (!(opts.seconds >= 0)) fail("--seconds must be >= 0")
  return opts
}

function fail(message) {
  console.error(`subscriber.js: ${message}`)
  process.exit(2)
}

// msgpackr decodes 64-bit integers (t, t_recv, t_pub) as BigInt, @msgpack/msgpack as numbers.
function normalise(x) {
  if (typeof x === "bigint") return Number(x)
  if (Array.isArray(x)) return x.map(normalise)
  if (x instanceof Uint8Array) return Array.from(x)
  if (x && typeof x === "object") {
    const out = {}
    for (const k of Object.keys(x)) out[k] = normalise(x[k])
    return out
  }
  return x
}

function same(a, b) {
  if (Array.isArray(a) || (a && typeof a === "object")) {
    if (typeof b !== "object" || b === null || Array.isArray(a) !== Array.isArray(b)) return false
    const ka = Object.keys(a)
    const kb = Object.keys(b)
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]))
  }
  return a === b || (Number.isNaN(a) && Number.isNaN(b))
}

const fmt = (xs) => `(${xs.map((v) => v.toFixed(3)).join(", ")})`

function describe(kind, session, msg) {
  if (kind === "pose") {
    const head = msg.joints.slice(15 * 3, 15 * 3 + 3) // joint 15: head
    const latency = (Number(msg.t_pub) - Number(msg.t_recv)) / 1e6
    return `pose/${session} seq=${msg.seq} state=${msg.state} head=${fmt(head)} ` +
      `residual=${msg.residual.toFixed(4)} m latency=${latency.toFixed(1)} ms`
  }
  if (kind === "skeleton") {
    const rest = msg.rest
    const top = msg.joints.indexOf("head")
    return `skeleton/${session}: ${msg.joints.length} joints (${msg.joints[0]} ... ` +
      `${msg.joints[msg.joints.length - 1]}), rest head at ${fmt(rest.slice(3 * top, 3 * top + 3))}` +
      ` ${msg.units}, betas[0]=${msg.betas[0].toFixed(3)}; ${msg.frame}`
  }
  if (kind === "status") {
    const sessions = Object.entries(msg.sessions).map(([id, s]) =>
      `${id} ${s.rate_hz.toFixed(1)} Hz, latency p99 ` +
      `${s.latency_ms.p99 === undefined ? "-" : s.latency_ms.p99.toFixed(1)} ms`)
    return `status: engine ${msg.engine}, ${msg.live_sessions} live: ${sessions.join("; ")}`
  }
  return `frame/${session} seq=${msg.seq}`
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const sock = new zmq.Subscriber({ linger: 0 })
  sock.receiveTimeout = 200
  try {
    sock.connect(opts.publish)
  } catch (err) {
    fail(`cannot connect to ${opts.publish}: ${err.message}`)
  }
  const topics = ["pose/", "skeleton/"].concat(opts.frames || opts.json ? ["frame/"] : [])
  for (const t of topics) sock.subscribe(t + opts.session)
  sock.subscribe("status")
  const unpackr = opts.check ? require("msgpackr").unpack : null

  const summary = { poses: {}, skeletons: {}, frames: {}, status: 0, decoded: 0,
    check: opts.check ? { compared: 0, failures: [] } : null }
  let stopping = false
  process.on("SIGINT", () => { stopping = true })
  process.on("SIGTERM", () => { stopping = true })
  let deadline = Infinity
  let connected = false
  let printed = 0

  while (!stopping && Date.now() < deadline) {
    let topic, payload
    try {
      [topic, payload] = await sock.receive()
    } catch (err) {
      if (err.code === "EAGAIN") continue // receiveTimeout: look at the clock and signals
      throw err
    }
    if (!connected) {
      connected = true // messages flow: the connection is up
      console.error(`subscriber.js: connected to ${opts.publish}`)
      if (opts.seconds > 0) deadline = Date.now() + opts.seconds * 1000
    }
    const name = topic.toString()
    const slash = name.indexOf("/")
    const kind = slash < 0 ? name : name.slice(0, slash)
    const session = slash < 0 ? "" : name.slice(slash + 1)
    const msg = decodeMessage(payload)
    summary.decoded += 1
    if (unpackr) {
      summary.check.compared += 1
      let other
      try {
        other = unpackr(payload)
      } catch (err) {
        other = { error: err.message }
      }
      if (!same(normalise(msg), normalise(other)) && summary.check.failures.length < 20) {
        summary.check.failures.push(name)
      }
    }
    if (kind === "pose") {
      const s = (summary.poses[session] ||= { count: 0, seqs: [], keys: Object.keys(msg) })
      s.count += 1
      s.seqs.push(Number(msg.seq))
    } else if (kind === "skeleton") {
      const s = (summary.skeletons[session] ||= { count: 0 })
      s.count += 1
      Object.assign(s, { keys: Object.keys(msg), joints: msg.joints.length,
        parents: msg.parents.length, rest: msg.rest.length, root_parent: msg.parents[0] })
    } else if (kind === "frame") {
      summary.frames[session] = (summary.frames[session] || 0) + 1
    } else if (kind === "status") {
      summary.status += 1
    }
    if (!opts.json && (kind !== "pose" || printed++ % opts.every === 0)) {
      console.log(describe(kind, session, msg))
    }
  }
  if (opts.json) console.log(JSON.stringify(summary))
  sock.close()
}

main().catch((err) => {
  console.error(`subscriber.js: ${err.message}`)
  process.exit(1)
})
