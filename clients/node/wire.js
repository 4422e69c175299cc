"use strict"
// The fitstream wire protocol v1 for Node.js: what a device sends and what subscribers get.
// The contract is docs/protocol.md in the repository; this file only builds and reads maps.

const { encode, decode } = require("@msgpack/msgpack")

const DEFAULT_INGEST = "tcp://127.0.0.1:5555"
const DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"

// Encoders a device may use. Both are valid on the wire:
//  - @msgpack/msgpack writes JavaScript integers as MessagePack integers (t as uint64);
//  - msgpackr's default pack() writes integers beyond 32 bits as float64 (t as float64),
//    which the tracker accepts for seq and t while integral and within +-2**53.
const ENCODERS = {
  msgpack: (msg) => Buffer.from(encode(msg)),
  msgpackr: (msg) => require("msgpackr").pack(msg), // a devDependency: tests and this option
}

// A yaw rotation about +Y as a quaternion x y z w.
function yaw(angle) {
  return [0, Math.sin(angle / 2), 0, Math.cos(angle / 2)]
}

// One frame of a person standing at the stage origin, facing -Z (where an OpenXR headset
// looks), swaying a little, both hands tracked in front of the chest.
// Stage frame: right-handed, +Y up, metres; poses are px py pz qx qy qz qw.
function makeFrame(session, seq, tNs, seconds) {
  const sway = 0.03 * Math.sin(2 * Math.PI * 0.5 * seconds)
  const q = yaw(0.2 * Math.sin(2 * Math.PI * 0.25 * seconds))
  const hand = (side) => {
    const x = side * 0.2 + sway
    const y = 1.15 + 0.05 * Math.sin(2 * Math.PI * 0.7 * seconds + side)
    const z = -0.35
    const tips = []
    for (let f = 0; f < 5; f++) tips.push(x + side * (0.02 * f - 0.04), y - 0.01 * f, z - 0.17)
    return { wrist: [x, y, z, 0, 0, 0, 1], tips, tracked: true }
  }
  return {
    v: 1,
    session,
    seq,
    t: tNs,
    head: [sway, 1.65, 0, ...q],
    left: hand(-1),
    right: hand(1),
  }
}

// Which MessagePack type a frame's `t` was written as (for the tests and for curiosity):
// looks for the key "t" (fixstr a1 74) and names the marker byte that follows it.
function tEncoding(buf) {
  const i = buf.indexOf(Buffer.from([0xa1, 0x74]))
  if (i < 0) return "absent"
  const m = buf[i + 2]
  if (m === 0xcb) return "float64"
  if (m === 0xca) return "float32"
  if (m === 0xcf || m === 0xd3) return "int64"
  if (m === 0xce || m === 0xd2) return "int32"
  return "int"
}

// decode with @msgpack/msgpack (the client's runtime dependency).
function decodeMessage(payload) {
  return decode(payload)
}

module.exports = { DEFAULT_INGEST, DEFAULT_PUBLISH, ENCODERS, makeFrame, tEncoding, decodeMessage }
