'use strict';
// The load client of bench/realtime.py: many WebSockets in one Node process, driven by
// JSON-line commands on stdin, answering with JSON lines on stdout.
//
// It speaks Engine.IO 4 / Socket.IO 5 text frames itself (mode "sio") rather than running
// socket.io-client: one decoder for every frame, a byte compare on the packet type, and a
// byte search for the message marker, so that 20,000 frames/s cost the client little next
// to the server being measured. Mode "ws" speaks to the raw broadcast server instead.
//
// usage: node client.js CONFIG.json
//   config: {mode, url, clientKey, tokens, concurrency, deflate, publisher}
//     publisher: null or {token, room, body} (body: the message object; "message" gets
//     the marker "bench#<n>#" in front of its text)
// commands:
//   {"cmd": "connect"}                        -> {"event": "connected", ok, failed, errors,
//                                                 extensions (as the server accepted them)}
//   {"cmd": "window", from, count}            -> {"event": "window"} (counting starts)
//   {"cmd": "publish", from, count, rate}     -> {"event": "published", sent, acks, errors}
//   {"cmd": "collect", from, count, within}   -> {"event": "collected", counts, last, bytes}
//   {"cmd": "close"}                           -> {"event": "closed"}, then exits

const fs = require('fs');
const readline = require('readline');
const WebSocket = require('ws');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const MARK = Buffer.from('bench#');
const CONNECT_TIMEOUT_MS = 60000;

const now = () => Number(process.hrtime.bigint()) / 1000; // µs, CLOCK_MONOTONIC: same in every process

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// -- what subscribers receive ------------------------------------------------------------

const window = { from: 0, count: 0, counts: null, last: null, total: 0, bytes: 0, waiter: null };

function markOf(buf) {
  const at = buf.indexOf(MARK);
  if (at < 0) return -1;
  let n = 0;
  for (let j = at + MARK.length; j < buf.length; j++) {
    const d = buf[j] - 48;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
  }
  return n;
}

function received(buf) {
  const i = markOf(buf) - window.from;
  if (i < 0 || i >= window.count) return; // a straggler of an earlier window
  window.counts[i] += 1;
  window.last[i] = now();
  window.total += 1;
  window.bytes = buf.length;
  if (window.waiter && window.total >= window.expected) window.waiter();
}

// -- one socket --------------------------------------------------------------------------

class Conn {
  constructor(token, subscriber) {
    this.token = token;
    this.subscriber = subscriber;
    this.ws = null;
    this.acks = new Map(); // ack id -> callback
    this.nextAck = 1;
  }

  open() {
    return new Promise((resolve) => {
      let done = false;
      const finish = (error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(error);
      };
      const timer = setTimeout(() => finish('timed out'), CONNECT_TIMEOUT_MS);
      const url = cfg.mode === 'ws' ? `${cfg.url}?token=${encodeURIComponent(this.token)}` : cfg.url;
      const ws = new WebSocket(url, { perMessageDeflate: cfg.deflate });
      this.ws = ws;
      this.ready = () => finish(null);
      this.refused = (why) => finish(why);
      ws.on('message', (data) => this.frame(data));
      ws.on('error', (err) => finish(String(err.message || err)));
      ws.on('close', (code) => finish(`closed (${code})`));
    });
  }

  frame(buf) {
    if (cfg.mode === 'ws') {
      if (buf.length === 2 && buf[0] === 0x6f && buf[1] === 0x6b) this.ready(); // "ok"
      else if (this.subscriber) received(buf);
      return;
    }
    const type = buf[0];
    if (type === 0x34) {
      // Engine.IO message: a Socket.IO packet
      const kind = buf[1];
      if (kind === 0x32) {
        if (this.subscriber) received(buf); // 2 EVENT
      } else if (kind === 0x33) this.ack(buf); // 3 ACK
      else if (kind === 0x30) this.ready(); // 0 CONNECT
      else if (kind === 0x34) this.refused(buf.toString()); // 4 CONNECT_ERROR
    } else if (type === 0x32) {
      this.ws.send('3' + buf.toString('latin1', 1)); // ping -> pong
    } else if (type === 0x30) {
      this.ws.send('40' + JSON.stringify({ clientKey: cfg.clientKey, token: this.token }));
    }
  }

  ack(buf) {
    let id = 0;
    let j = 2;
    for (; j < buf.length && buf[j] >= 48 && buf[j] <= 57; j++) id = id * 10 + buf[j] - 48;
    const callback = this.acks.get(id);
    if (callback) {
      this.acks.delete(id);
      callback(buf.toString('utf8', j));
    }
  }

  emit(name, body, callback) {
    if (cfg.mode === 'ws') {
      this.ws.send(`${body.room}\n${JSON.stringify(body)}`);
      return;
    }
    const id = this.nextAck++;
    this.acks.set(id, callback);
    this.ws.send(`42${id}${JSON.stringify([name, body])}`);
  }
}

const subscribers = cfg.tokens.map((t) => new Conn(t, true));
const publisher = cfg.publisher ? new Conn(cfg.publisher.token, false) : null;

async function connectAll() {
  const all = publisher ? [...subscribers, publisher] : subscribers;
  const errors = [];
  let next = 0;
  const worker = async () => {
    while (next < all.length) {
      const error = await all[next++].open();
      if (error) errors.push(error);
    }
  };
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency, all.length) }, worker));
  const extensions = all[0].ws ? all[0].ws.extensions : '';
  reply({ event: 'connected', ok: all.length - errors.length, failed: errors.length, errors: errors.slice(0, 5), extensions });
}

// -- publishing --------------------------------------------------------------------------

function publish({ from, count, rate }) {
  const sent = new Array(count).fill(0);
  const errors = [];
  let acks = 0;
  let pending = count;
  const start = now();
  const interval = 1e6 / rate;
  const pad = cfg.publisher.body.message || '';
  let finished = false;
  const finish = () => {
    if (finished) return; // late acks after the deadline change nothing
    finished = true;
    reply({ event: 'published', sent, acks, errors: errors.slice(0, 5) });
  };
  // Acks that have not come 15 s after the last send are not waited for: the bench
  // reports the share acknowledged.
  const ackTimer = setTimeout(finish, 15000 + (count / rate) * 1000);
  const onAck = (text) => {
    acks += 1;
    if (cfg.ackOk && !text.includes(cfg.ackOk)) errors.push(text.slice(0, 300));
    if (--pending === 0) {
      clearTimeout(ackTimer);
      finish();
    }
  };
  let k = 0;
  const tick = () => {
    // Send every message that is due, then sleep until the next one: the offered rate
    // holds even when a timer fires late.
    while (k < count && now() - start >= k * interval) {
      const body = { ...cfg.publisher.body, room: cfg.publisher.room, message: `bench#${from + k}#${pad}` };
      sent[k] = now();
      publisher.emit('chat message', body, onAck);
      k += 1;
    }
    if (k < count) setTimeout(tick, Math.max(0, (start + k * interval - now()) / 1000));
    else if (cfg.mode === 'ws') {
      clearTimeout(ackTimer);
      finish(); // the raw server does not acknowledge
    }
  };
  tick();
}

function collect({ from, count, within }) {
  const expected = count * subscribers.length;
  const finish = () => {
    window.waiter = null;
    clearTimeout(timer);
    reply({ event: 'collected', counts: window.counts, last: window.last, bytes: window.bytes });
  };
  if (window.from !== from || window.count !== count) throw new Error('collect: not the open window');
  window.expected = expected;
  const timer = setTimeout(finish, within * 1000);
  if (window.total >= expected) finish();
  else window.waiter = finish;
}

function open({ from, count }) {
  Object.assign(window, { from, count, counts: new Array(count).fill(0), last: new Array(count).fill(0), total: 0 });
}

// -- commands ----------------------------------------------------------------------------

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line);
  switch (command.cmd) {
    case 'connect':
      connectAll();
      break;
    case 'window':
      open(command);
      reply({ event: 'window' });
      break;
    case 'publish':
      publish(command);
      break;
    case 'collect':
      collect(command);
      break;
    case 'close':
      for (const c of [...subscribers, publisher]) if (c && c.ws) c.ws.terminate();
      reply({ event: 'closed' });
      process.exit(0);
  }
});
lines.on('close', () => process.exit(0));
