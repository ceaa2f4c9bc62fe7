/**
 * Issue 14, part 2: the lame-duck drain, on a server run as a real process.
 *
 * A pool of 40 clients (STOMP over TCP and WebSocket, MQTT 3.1.1 and 5 over
 * TCP and WebSocket, JSON WebSocket) is connected; SIGTERM; then:
 * - `/readyz` answers 503 before any client is disconnected, and for the
 *   ready window a new connection is still accepted;
 * - then new connections are refused (TCP listener closed, WebSocket
 *   upgrade 503) while the clients are disconnected in batches spread over
 *   the drain window, each told why in its protocol;
 * - the process exits 0 within both windows and a margin.
 * A second SIGTERM during the drain ends the process at once.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { after, describe, it, type TestContext } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import { WebSocket } from 'ws';
import { JsonClient } from '../helpers/json-ws.js';
import { runHerald, type HeraldProcess } from '../helpers/process.js';
import { api, tempDir } from '../helpers/server.js';
import { RawStomp, frameHeader } from '../helpers/stomp.js';

const PASSWORD = 'admin-drain-pw-1';
const READY_S = 2;
const DRAIN_S = 3;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Node {
  proc: HeraldProcess;
  http: string;
  ws: string;
  stompPort: number;
  mqttPort: number;
}

async function startNode(readySeconds: number, drainSeconds: number): Promise<Node> {
  const dir = tempDir('herald-drain-');
  dirs.push(dir);
  const proc = runHerald(['serve', '--host', '127.0.0.1', '--http-port', '0', '--stomp-port', '0', '--mqtt-port', '0'], {
    HERALD_DATA_DIR: dir,
    HERALD_ADMIN_PASSWORD: PASSWORD,
    HERALD_SQLITE_SYNCHRONOUS: 'NORMAL',
    HERALD_LOG_LEVEL: 'warn',
    HERALD_DRAIN_READY_SECONDS: String(readySeconds),
    HERALD_DRAIN_SECONDS: String(drainSeconds),
  });
  const httpPort = Number((await proc.waitFor(/^listening http \S+:(\d+)$/))[1]);
  const stompPort = Number((await proc.waitFor(/^listening stomp \S+:(\d+)$/))[1]);
  const mqttPort = Number((await proc.waitFor(/^listening mqtt \S+:(\d+)$/))[1]);
  return { proc, http: `http://127.0.0.1:${httpPort}`, ws: `ws://127.0.0.1:${httpPort}`, stompPort, mqttPort };
}

/** One client of the pool: when its connection closed, and what it was told first. */
interface Tracked {
  kind: string;
  closedAt?: number;
  closed: Promise<void>;
  /** Checks the goodbye of its protocol; returns the JSON reconnectAfterMs, if any. */
  check(): number | undefined;
}

async function stompClient(kind: 'stomp-tcp' | 'stomp-ws', n: Node): Promise<Tracked> {
  const c = kind === 'stomp-tcp' ? await RawStomp.tcp(n.stompPort) : await RawStomp.ws(`${n.ws}/stomp`);
  const connected = await c.connect({ login: 'admin', passcode: PASSWORD });
  assert.equal(connected.command, 'CONNECTED');
  const t: Tracked = {
    kind,
    closed: c.closedPromise.then(() => void (t.closedAt = Date.now())),
    check() {
      const error = c.frames.find((f) => f.command === 'ERROR');
      assert.ok(error, `${kind}: an ERROR frame before the close`);
      assert.equal(frameHeader(error, 'message'), 'server shutting down');
      return undefined;
    },
  };
  return t;
}

async function mqttClient(version: 4 | 5, transport: 'tcp' | 'ws', n: Node, i: number): Promise<Tracked> {
  const url = transport === 'tcp' ? `mqtt://127.0.0.1:${n.mqttPort}` : `${n.ws}/mqtt`;
  const c: MqttClient = await mqtt.connectAsync(url, {
    protocolVersion: version,
    clientId: `drain-${version}-${transport}-${i}`,
    username: 'admin',
    password: PASSWORD,
    reconnectPeriod: 0,
  });
  let disconnect: mqttPacket.IDisconnectPacket | undefined;
  c.on('disconnect', (p) => (disconnect ??= p));
  const kind = `mqtt${version === 5 ? '5' : '3.1.1'}-${transport}`;
  const t: Tracked = {
    kind,
    closed: new Promise<void>((r) => c.once('close', () => r())).then(() => void (t.closedAt = Date.now())),
    check() {
      if (version === 5) {
        assert.ok(disconnect, `${kind}: a DISCONNECT before the close`);
        assert.equal(disconnect.reasonCode, 0x8b);
        assert.equal(disconnect.properties?.reasonString, 'server shutting down');
      } else {
        assert.equal(disconnect, undefined, `${kind}: 3.1.1 has no server DISCONNECT; the connection just closes`);
      }
      return undefined;
    },
  };
  return t;
}

async function jsonClient(n: Node, token: string): Promise<Tracked> {
  const c = await JsonClient.open(`${n.ws}/websocket/${token}`);
  await c.sync();
  const t: Tracked = {
    kind: 'json-ws',
    closed: c.closed.then(() => void (t.closedAt = Date.now())),
    check() {
      const e = c.events.find((x) => x.event === 'error');
      assert.ok(e, 'json-ws: an error event before the close');
      const data = e.data as { code: string; message: string; reconnectAfterMs: number };
      assert.equal(data.code, 'shutdown');
      assert.equal(data.message, 'server shutting down');
      assert.equal(c.closeCode, 1001);
      return data.reconnectAfterMs;
    },
  };
  return t;
}

async function login(n: Node): Promise<string> {
  const r = await api<{ authToken: string }[]>(n.http, 'POST', '/v1/login', { body: { username: 'admin', password: PASSWORD } });
  assert.equal(r.status, 200);
  return r.body.data[0]!.authToken;
}

/** The pool: 8 of each kind, MQTT half over TCP and half over WebSocket. */
async function pool(n: Node, token: string): Promise<Tracked[]> {
  const clients: Tracked[] = [];
  for (let i = 0; i < 8; i++) {
    clients.push(
      ...(await Promise.all([
        stompClient(i % 2 ? 'stomp-tcp' : 'stomp-ws', n),
        stompClient(i % 2 ? 'stomp-ws' : 'stomp-tcp', n),
        mqttClient(4, i % 2 ? 'tcp' : 'ws', n, i),
        mqttClient(5, i % 2 ? 'ws' : 'tcp', n, i),
        jsonClient(n, token),
      ])),
    );
  }
  return clients;
}

async function readyzStatus(n: Node): Promise<number> {
  return (await fetch(`${n.http}/readyz`)).status;
}

/** Resolves with the TCP connect's error code, or 'connected'. */
function tcpConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** The HTTP status of a refused WebSocket upgrade, or 101. */
function upgradeStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => resolve(0));
  });
}

describe('lame-duck drain (SIGTERM)', () => {
  it('answers 503 on /readyz first, then tells a pool of 40 clients why, spread over the drain window, and exits 0', async (t: TestContext) => {
    const n = await startNode(READY_S, DRAIN_S);
    const token = await login(n);
    const clients = await pool(n, token);
    assert.equal(clients.length, 40);
    assert.equal(await readyzStatus(n), 200);

    const sigtermAt = Date.now();
    n.proc.child.kill('SIGTERM');
    let first503At: number | undefined;
    while (first503At === undefined) {
      if ((await readyzStatus(n)) === 503) first503At = Date.now();
      else await sleep(10);
      assert.ok(Date.now() - sigtermAt < 1000, '/readyz turns 503 within a second of SIGTERM');
    }
    assert.ok(clients.every((c) => c.closedAt === undefined), '503 before any client is disconnected');

    // The ready window: everything keeps serving, new connections included.
    const late = await jsonClient(n, token);
    clients.push(late);
    assert.equal(await tcpConnect(n.mqttPort), 'connected', 'the MQTT listener still accepts in the ready window');

    // The drain window: the first disconnect marks it; from then on new connections are refused.
    while (clients.every((c) => c.closedAt === undefined)) await sleep(5);
    const firstCloseAt = Math.min(...clients.map((c) => c.closedAt ?? Infinity));
    assert.ok(firstCloseAt - sigtermAt >= READY_S * 1000 - 200, `no disconnect during the ready window (first after ${firstCloseAt - sigtermAt} ms)`);
    assert.equal(await tcpConnect(n.mqttPort), 'ECONNREFUSED', 'the MQTT listener is closed during the drain');
    assert.equal(await tcpConnect(n.stompPort), 'ECONNREFUSED', 'the STOMP listener is closed during the drain');
    assert.equal(await upgradeStatus(`${n.ws}/websocket/${token}`), 503, 'WebSocket upgrades are refused during the drain');
    assert.equal(await readyzStatus(n), 503, '/readyz still answers 503 during the drain');

    await Promise.all(clients.map((c) => c.closed));
    const { code } = await n.proc.exited;
    const exitedAfter = Date.now() - sigtermAt;
    assert.equal(code, 0, n.proc.stderr);
    assert.ok(exitedAfter < (READY_S + DRAIN_S) * 1000 + 3000, `exits within both windows and a margin (${exitedAfter} ms)`);

    // Each was told why, in its protocol.
    const reconnects: number[] = [];
    for (const c of clients) {
      const r = c.check();
      if (r !== undefined) reconnects.push(r);
    }
    assert.equal(reconnects.length, 9);
    for (const r of reconnects) assert.ok(Number.isInteger(r) && r >= 0 && r <= DRAIN_S * 1000, `reconnectAfterMs ${r} within the window`);
    assert.ok(new Set(reconnects).size >= 5, `reconnectAfterMs values differ: ${reconnects.join(', ')}`);

    // Spread over the window: first and last at least 1.5 s apart, no more than half in any 0.5 s.
    const times = clients.map((c) => c.closedAt! - sigtermAt).sort((a, b) => a - b);
    const spread = times.at(-1)! - times[0]!;
    let densest = 0;
    for (let i = 0; i < times.length; i++) densest = Math.max(densest, times.filter((x) => x >= times[i]! && x < times[i]! + 500).length);
    t.diagnostic(`SIGTERM → 503 ${first503At - sigtermAt} ms; disconnects from ${times[0]} to ${times.at(-1)} ms (spread ${spread} ms), at most ${densest} of ${times.length} in any 0.5 s; exit after ${exitedAfter} ms`);
    assert.ok(spread >= 1500, `disconnects spread over ${spread} ms`);
    assert.ok(times.at(-1)! <= (READY_S + DRAIN_S) * 1000 + 500, `last disconnect at ${times.at(-1)} ms, within the windows`);
    assert.ok(densest <= times.length / 2, `at most half in any 0.5 s (${densest} of ${times.length})`);
  });

  it('exits at once on a second SIGTERM during the drain', async () => {
    const n = await startNode(1, 10);
    const token = await login(n);
    const clients = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(() => jsonClient(n, token)));
    n.proc.child.kill('SIGTERM');
    while (clients.every((c) => c.closedAt === undefined)) await sleep(5);
    const secondAt = Date.now();
    assert.ok(clients.some((c) => c.closedAt === undefined), 'the drain is still under way');
    n.proc.child.kill('SIGTERM');
    const { code } = await n.proc.exited;
    const took = Date.now() - secondAt;
    assert.ok(took < 1000, `exited ${took} ms after the second signal`);
    assert.equal(code, 1, 'a drain cut short is not a clean exit');
    await Promise.all(clients.map((c) => c.closed));
  });
});
