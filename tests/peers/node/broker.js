'use strict'
// A scripted MQTT broker for komd's tests, on the npm package mqtt-packet (an encoder and
// parser we did not write). It does what mosquitto 2.0 never does: it sends topic aliases
// to clients, announces a small Receive Maximum, Maximum QoS, Maximum Packet Size or a
// Server Keep Alive, says Session Present 1, holds acknowledgements, and reports every
// packet a client sends, in order, so that a test can check the client's packet ids,
// DUP flags and properties (MQTT 3.1.1 and 5.0).
//
// usage: node broker.js PORT 'JSON options'
//   options: connack: {sessionPresent, returnCode|reasonCode, properties: {...}} for every
//            CONNECT (a list: one per connection in turn, the last one repeated);
//            ack: true (default) answer PUBLISH with PUBACK / PUBREC, PUBREL with PUBCOMP
//                 and a client's PUBREC with PUBREL; false: hold them until an "ack" command
//                 (a test sends the PUBREL itself, to send a QoS 2 PUBLISH again before it);
//            ping: true (default) answer PINGREQ;
//            maxQoS: granted QoS cap in SUBACK (default 2).
// stdin, one JSON object a line:
//   {"cmd": "send", "packet": {...}}      any packet (mqtt-packet's object form; payload and
//                                         correlationData as text, or as {"hex": "..."})
//   {"cmd": "send", "packets": [...]}     several, in one write (one TCP segment on loopback)
//   {"cmd": "send", "hex": "..."}         raw bytes (a broken packet)
//   {"cmd": "ack"}                        send the held acknowledgements, in order
//   {"cmd": "ack", "n": N}                the first N of them only
//   {"cmd": "set", "options": {...}}      change options
//   {"cmd": "close"}                      close the client connections
// stdout, one JSON object a line:
//   {"ev": "listening", "port": N}
//   {"ev": "connect", "conn": N}           a TCP connection (numbered from 1)
//   {"ev": "packet", "conn": N, "bytes": B, "packet": {...}}  B: the whole packet's size
//   {"ev": "error", "conn": N, "error": "..."}   a packet mqtt-packet could not parse
//   {"ev": "close", "conn": N}
//   {"ev": "done", "cmd": "..."}           a command was carried out
const net = require('net')
const readline = require('readline')
const mqtt = require('mqtt-packet')

const port = parseInt(process.argv[2], 10)
const opts = Object.assign({ ack: true, ping: true, maxQoS: 2, connack: { returnCode: 0 } },
  JSON.parse(process.argv[3] || '{}'))
const conns = new Map()
let nconn = 0
let nconnack = 0

function out (o) {
  process.stdout.write(JSON.stringify(o) + '\n')
}

// Buffers in a packet as text (and hex when they are not UTF-8 text), for the test to read.
function plain (p) {
  const o = {}
  for (const [k, v] of Object.entries(p)) {
    if (Buffer.isBuffer(v)) {
      o[k] = v.toString('utf8')
      o[k + '_hex'] = v.toString('hex')
    } else if (v && typeof v === 'object' && !Array.isArray(v)) {
      o[k] = plain(v)
    } else {
      o[k] = v
    }
  }
  return o
}

// The reverse, for packets from the test: {"hex": "..."} becomes a Buffer.
function bufs (p) {
  for (const [k, v] of Object.entries(p)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      if (typeof v.hex === 'string' && Object.keys(v).length === 1) p[k] = Buffer.from(v.hex, 'hex')
      else bufs(v)
    }
  }
  if (p.cmd === 'publish' && typeof p.payload === 'string') p.payload = Buffer.from(p.payload)
  if (p.properties && typeof p.properties.correlationData === 'string') {
    p.properties.correlationData = Buffer.from(p.properties.correlationData)
  }
  return p
}

function send (c, packet) {
  if (c.sock.destroyed) return
  c.sock.write(mqtt.generate(packet, { protocolVersion: c.version }))
}

function ackOf (c, p) {
  const v5 = c.version === 5
  switch (p.cmd) {
    case 'publish':
      if (p.qos === 1) return { cmd: 'puback', messageId: p.messageId, reasonCode: v5 ? 0 : undefined }
      if (p.qos === 2) return { cmd: 'pubrec', messageId: p.messageId, reasonCode: v5 ? 0 : undefined }
      return null
    case 'pubrel':
      return { cmd: 'pubcomp', messageId: p.messageId, reasonCode: v5 ? 0 : undefined }
    case 'pubrec':
      return { cmd: 'pubrel', messageId: p.messageId, reasonCode: v5 ? 0 : undefined }
    default:
      return null
  }
}

function onPacket (c, p) {
  // the whole packet's size: fixed header byte, Remaining Length as a variable byte integer
  const bytes = 1 + (p.length < 128 ? 1 : p.length < 16384 ? 2 : p.length < 2097152 ? 3 : 4) + p.length
  out({ ev: 'packet', conn: c.n, bytes, packet: plain(p) })
  switch (p.cmd) {
    case 'connect': {
      c.version = p.protocolVersion
      c.parser.settings.protocolVersion = p.protocolVersion
      const list = Array.isArray(opts.connack) ? opts.connack : [opts.connack]
      const ca = Object.assign({ cmd: 'connack', returnCode: 0, sessionPresent: false },
        list[Math.min(nconnack, list.length - 1)])
      nconnack++
      if (c.version === 5) {
        ca.reasonCode = ca.reasonCode !== undefined ? ca.reasonCode : ca.returnCode
        delete ca.returnCode
      } else {
        delete ca.properties
      }
      send(c, ca)
      break
    }
    case 'subscribe': {
      const granted = p.subscriptions.map(s => Math.min(s.qos, opts.maxQoS))
      send(c, { cmd: 'suback', messageId: p.messageId, granted })
      break
    }
    case 'unsubscribe':
      send(c, { cmd: 'unsuback', messageId: p.messageId, granted: p.unsubscriptions.map(() => 0) })
      break
    case 'pingreq':
      if (opts.ping) send(c, { cmd: 'pingresp' })
      break
    case 'disconnect':
      c.sock.end()
      break
    default: {
      const a = ackOf(c, p)
      if (!a) break
      if (a.reasonCode === undefined) delete a.reasonCode
      if (opts.ack) send(c, a)
      else c.held.push(a)
    }
  }
}

const server = net.createServer(sock => {
  const c = { n: ++nconn, sock, version: 4, held: [] }
  c.parser = mqtt.parser({ protocolVersion: 4 })
  conns.set(c.n, c)
  out({ ev: 'connect', conn: c.n })
  c.parser.on('packet', p => onPacket(c, p))
  c.parser.on('error', e => {
    out({ ev: 'error', conn: c.n, error: String(e && e.message ? e.message : e) })
    sock.destroy()
  })
  sock.on('data', d => c.parser.parse(d))
  sock.on('error', () => {})
  sock.on('close', () => {
    conns.delete(c.n)
    out({ ev: 'close', conn: c.n })
  })
})

server.listen(port, '127.0.0.1', () => out({ ev: 'listening', port: server.address().port }))

readline.createInterface({ input: process.stdin }).on('line', line => {
  if (!line.trim()) return
  const m = JSON.parse(line)
  switch (m.cmd) {
    case 'send':
      for (const c of conns.values()) {
        if (m.hex !== undefined) {
          if (!c.sock.destroyed) c.sock.write(Buffer.from(m.hex, 'hex'))
        } else if (!m.packets) send(c, bufs(m.packet))
        else if (!c.sock.destroyed) {
          c.sock.write(Buffer.concat(m.packets.map(p => mqtt.generate(bufs(p), { protocolVersion: c.version }))))
        }
      }
      break
    case 'ack':
      for (const c of conns.values()) {
        const n = m.n === undefined ? c.held.length : m.n
        for (const a of c.held.splice(0, n)) send(c, a)
      }
      break
    case 'set':
      Object.assign(opts, m.options)
      break
    case 'close':
      for (const c of conns.values()) c.sock.destroy()
      break
    default:
      out({ ev: 'error', conn: 0, error: 'unknown command ' + m.cmd })
  }
  out({ ev: 'done', cmd: m.cmd })
}).on('close', () => process.exit(0))
