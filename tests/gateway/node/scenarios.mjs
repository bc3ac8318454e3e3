// Drives Parley's Socket.IO gateway with the npm socket.io-client and records what
// happened, for tests/gateway/test_node_client.py. The Python side writes the steps and
// makes every assertion; this side only performs them and reports.
//
// Input (stdin, JSON):
//   {"url": "http://127.0.0.1:PORT", "waitMs": 3000,
//    "scenarios": [{"name": "...", "steps": [STEP, ...]}, ...]}
// Output: one JSON line per scenario:
//   {"name", "steps": [RESULT, ...], "sockets": {NAME: {"events", "disconnect"}}}
//
// Steps (each names the socket it acts on; results line up with the steps):
//   {"op": "open", "socket", "auth"?, "extraHeaders"?}
//       -> {"connected": true} | {"connectError": {"message", "data"}} | {"timedOut": true}
//   {"op": "emit", "socket", "event", "args": [...], "ack": bool}
//       -> {"ack": [...]} | {"disconnected": reason} | {"timedOut": true} | {"sent": true}
//   {"op": "http", "method", "path", "headers"?, "body"?}  -> {"status", "body"}
//   {"op": "waitEvents", "socket", "event", "count"}      -> {"count", "timedOut"?}
//   {"op": "waitClosed", "socket"}                        -> {"reason"} | {"timedOut": true}
//   {"op": "close", "socket"}                             -> {"closed": true}
// Events are recorded raw ([name, ...args]): base64 payloads stay base64.

import { io } from "socket.io-client";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

// Resolves with the first of: `fire` calling back, the socket of `entry` (if any)
// disconnecting, or the timeout.
function settle(entry, waitMs, fire) {
  return new Promise((resolve) => {
    if (entry?.disconnect) {
      resolve({ disconnected: entry.disconnect });
      return;
    }
    const onDisconnect = (reason) => done({ disconnected: reason });
    const timer = setTimeout(() => done({ timedOut: true }), waitMs);
    const done = (outcome) => {
      clearTimeout(timer);
      entry?.socket.off("disconnect", onDisconnect);
      resolve(outcome);
    };
    entry?.socket.on("disconnect", onDisconnect);
    fire(done);
  });
}

// Polls `check` until it is true or the time is up; the sockets' events arrive meanwhile.
async function until(check, waitMs) {
  const deadline = Date.now() + waitMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

class Scenario {
  constructor(url, waitMs) {
    this.url = url;
    this.waitMs = waitMs;
    this.sockets = new Map();
  }

  record(name) {
    const entry = this.sockets.get(name);
    if (!entry) throw new Error(`no socket named ${name}`);
    return entry;
  }

  async open({ socket: name, auth, extraHeaders }) {
    const socket = io(this.url, {
      transports: ["websocket"],
      forceNew: true, // one connection per socket: no multiplexing between users
      reconnection: false,
      timeout: this.waitMs,
      ...(auth === undefined ? {} : { auth }),
      ...(extraHeaders === undefined ? {} : { extraHeaders }),
    });
    const entry = { socket, events: [], disconnect: null };
    this.sockets.set(name, entry);
    socket.onAny((event, ...args) => entry.events.push([event, ...args]));
    socket.on("disconnect", (reason) => {
      entry.disconnect = reason;
    });
    return settle(null, this.waitMs, (done) => {
      socket.once("connect", () => done({ connected: true }));
      socket.once("connect_error", (err) =>
        done({ connectError: { message: err.message, data: err.data ?? null } }),
      );
    });
  }

  async emit({ socket: name, event, args = [], ack = false }) {
    const entry = this.record(name);
    const { socket } = entry;
    if (!ack) {
      socket.emit(event, ...args);
      return { sent: true };
    }
    return settle(entry, this.waitMs, (done) => {
      socket.emit(event, ...args, (...answer) => done({ ack: answer }));
    });
  }

  async http({ method, path, headers = {}, body }) {
    const response = await fetch(this.url + path, {
      method,
      headers: { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.waitMs),
    });
    const text = await response.text();
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    return { status: response.status, body: parsed };
  }

  async waitEvents({ socket: name, event, count = 1 }) {
    const entry = this.record(name);
    const seen = () => entry.events.filter(([e]) => e === event).length;
    const reached = await until(() => seen() >= count, this.waitMs);
    return reached ? { count: seen() } : { count: seen(), timedOut: true };
  }

  async waitClosed({ socket: name }) {
    const entry = this.record(name);
    const closed = await until(() => entry.disconnect !== null, this.waitMs);
    return closed ? { reason: entry.disconnect } : { timedOut: true };
  }

  async close({ socket: name }) {
    this.record(name).socket.disconnect();
    return { closed: true };
  }

  async run(step) {
    const action = {
      open: this.open,
      emit: this.emit,
      http: this.http,
      waitEvents: this.waitEvents,
      waitClosed: this.waitClosed,
      close: this.close,
    }[step.op];
    if (!action) return { error: `unknown op ${step.op}` };
    try {
      return await action.call(this, step);
    } catch (err) {
      return { error: String(err?.message ?? err) };
    }
  }

  report() {
    const sockets = {};
    for (const [name, entry] of this.sockets) {
      sockets[name] = { events: entry.events, disconnect: entry.disconnect };
      entry.socket.disconnect();
    }
    return sockets;
  }
}

const input = JSON.parse(await readStdin());
const scenarios = input.scenarios ?? [input];
for (const description of scenarios) {
  const scenario = new Scenario(input.url, input.waitMs ?? 3000);
  const steps = [];
  for (const step of description.steps ?? []) steps.push(await scenario.run(step));
  const line = { name: description.name ?? null, steps, sockets: scenario.report() };
  await new Promise((resolve) => process.stdout.write(JSON.stringify(line) + "\n", resolve));
}
process.exit(0); // a socket left half-open by the server must not keep the run alive
