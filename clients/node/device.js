#!/usr/bin/env node
"use strict"
// A headset stand-in: sends frames to `tracker serve` at a fixed rate (90 Hz by default).
//
//   node device.js [--ingest tcp://127.0.0.1:5555] [--session node-1] [--rate 90]
//                  [--seconds 0 (forever)] [--encoder msgpack|msgpackr] [--json]
//
// The tracker's ingest socket is a bound SUB; a device connects a PUB-like socket to it, so a
// slow or absent tracker never blocks the device. This one is an XPUB: it waits for the
// tracker's subscription before sending, so no frame is lost while the connection is set up
// (a plain PUB drops what it sends before then). With --json it prints one summary line at
// the end: {"session", "encoder", "sent", "rate_hz", "t_encodings": {...}}.

const zmq = require("zeromq")
const { DEFAULT_INGEST, ENCODERS, makeFrame, tEncoding } = require("./wire")

function parseArgs(argv) {
  const opts = { ingest: DEFAULT_INGEST, session: "node-1", rate: 90, seconds: 0,
    encoder: "msgpack", json: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`)
      return argv[++i]
    }
    if (a === "--ingest") opts.ingest = value()
    else if (a === "--session") opts.session = value()
    else if (a === "--rate") opts.rate = Number(value())
    else if (a === "--seconds") opts.seconds = Number(value())
    else if (a === "--encoder") opts.encoder = value()
    else if (a === "--json") opts.json = true
    else if (a === "-h" || a === "--help") {
      console.log("usage: node device.js [--ingest ADDR] [--session ID] [--rate HZ] " +
        "[--seconds S] [--encoder msgpack|msgpackr] [--json]")
      process.exit(0)
    } else fail(`unknown option ${a}`)
  }
  if (!(opts.rate > 0)) fail("--rate must be a positive number")
  if (!(opts.seconds >= 0)) fail("--seconds must be >= 0")
  if (!(opts.encoder in ENCODERS)) fail(`--encoder must be one of ${Object.keys(ENCODERS)}`)
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(opts.session)) fail("--session: 1-64 of [A-Za-z0-9._-]")
  return opts
}

function fail(message) {
  console.error(`device.js: ${message}`)
  process.exit(2)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// The device clock: monotonic ns. Its epoch is arbitrary (the tracker uses differences of t);
// this one starts at 1000 s, so that t needs more than 32 bits from the first frame, as a
// real runtime's clock does. A JavaScript number holds integers exactly up to 2**53 ns
// (104 days): a clock beyond that must be sent as a BigInt (@msgpack/msgpack's useBigInt64).
const T0 = process.hrtime.bigint()
const clockNs = () => Number(process.hrtime.bigint() - T0) + 1e12

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const encode = ENCODERS[opts.encoder]
  const sock = new zmq.XPublisher({ linger: 500 })
  try {
    sock.connect(opts.ingest)
  } catch (err) {
    fail(`cannot connect to ${opts.ingest}: ${err.message}`)
  }
  sock.receiveTimeout = 20000
  try {
    await sock.receive() // the tracker's subscription: the connection is up
  } catch (err) {
    fail(`no tracker at ${opts.ingest} (no subscription within 20 s)`)
  }
  let stopping = false
  process.on("SIGINT", () => { stopping = true })
  process.on("SIGTERM", () => { stopping = true })

  const periodNs = 1e9 / opts.rate
  const start = clockNs()
  const end = opts.seconds > 0 ? start + opts.seconds * 1e9 : Infinity
  const encodings = {}
  let seq = 0
  let next = start
  while (!stopping) {
    const t = Math.round(clockNs())
    if (t >= end) break
    seq += 1
    const payload = encode(makeFrame(opts.session, seq, t, (t - start) / 1e9))
    const kind = tEncoding(payload)
    encodings[kind] = (encodings[kind] || 0) + 1
    await sock.send(payload)
    if (!opts.json && seq % Math.round(opts.rate) === 0) {
      console.log(`${opts.session}: sent ${seq} frames`)
    }
    // A fixed schedule, so that a late frame does not shift the ones after it; but after a
    // stall of more than a frame the schedule restarts from now rather than sending the
    // missed frames in a burst (a headset skips a frame it missed too).
    next += periodNs
    const now = clockNs()
    if (now - next > periodNs) next = now
    const wait = (next - now) / 1e6
    if (wait > 0) await sleep(wait)
  }
  const seconds = (clockNs() - start) / 1e9
  const summary = { session: opts.session, encoder: opts.encoder, sent: seq,
    rate_hz: seq / seconds, t_encodings: encodings }
  console.log(opts.json ? JSON.stringify(summary) : `${opts.session}: sent ${seq} frames`)
  sock.close()
}

main().catch((err) => {
  console.error(`device.js: ${err.message}`)
  process.exit(1)
})
