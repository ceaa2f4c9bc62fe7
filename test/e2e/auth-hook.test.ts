/**
 * The connect hook (authHookUrl) with a real back end in the test process:
 * allow, deny with a reason, a timeout and a 5xx, each over STOMP (TCP and
 * WebSocket), MQTT (3.1.1 and 5) and the JSON WebSocket; decisions cached per
 * credential; a user known only through the hook has a mailbox and stored
 * messages like any user, and its session ends at the answer's expiresAt;
 * `always` mode puts even Herald's own users through the hook.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { api, ADMIN_PASSWORD, login, startServer, type TestServer } from '../helpers/server.js';
import { JsonClient, jsonUrl } from '../helpers/json-ws.js';
import { refusedWith, tcpUrl } from '../helpers/mqtt.js';
import { frameHeader, RawStomp, wsUrl } from '../helpers/stomp.js';
import { sendMessage } from '../helpers/messages.js';

type Answer = { status?: number; delayMs?: number; body: unknown };

/** The application's back end: answers by the presented password, and records every request. */
class BackEnd {
  readonly requests: Record<string, unknown>[] = [];
  server!: Server;
  url = '';
  policy: (body: Record<string, unknown>) => Answer = () => ({ body: { allow: false, reason: 'no policy' } });

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let raw = '';
      req.on('data', (d: Buffer) => (raw += d.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as Record<string, unknown>;
        this.requests.push(body);
        const a = this.policy(body);
        const answer = (): void => void res.writeHead(a.status ?? 200, { 'content-type': 'application/json' }).end(JSON.stringify(a.body));
        if (a.delayMs) setTimeout(answer, a.delayMs);
        else answer();
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/herald/connect`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

/** The back end's rules: `app-<user>` logs in as <user>; `slow-…` times out; `broken-…` answers 500; anything else is refused. */
function appPolicy(body: Record<string, unknown>): Answer {
  const password = String(body['password'] ?? '');
  if (password.startsWith('app-')) return { body: { allow: true, user: password.slice(4), roles: ['user'] } };
  if (password.startsWith('short-')) return { body: { allow: true, user: password.slice(6), expiresAt: Date.now() / 1000 + 1.5 } };
  if (password.startsWith('slow-')) return { delayMs: 1500, body: { allow: true, user: 'late' } };
  if (password.startsWith('broken-')) return { status: 500, body: { error: 'database down' } };
  return { body: { allow: false, reason: `unknown app credential ${password.slice(0, 12)}` } };
}

async function stompConnect(port: number, headers: Record<string, string>): Promise<{ frame: import('../../src/protocols/stomp/codec.js').StompFrame; conn: RawStomp }> {
  const conn = await RawStomp.tcp(port);
  return { frame: await conn.connect(headers), conn };
}

describe('the connect hook, fallback mode', () => {
  const backEnd = new BackEnd();
  let s: TestServer;
  let admin: string;

  before(async () => {
    await backEnd.start();
    backEnd.policy = appPolicy;
    s = await startServer({ authHookUrl: backEnd.url, authHookTimeoutMs: 400, authHookCacheSeconds: 60, tokenSweepMs: 100 });
    admin = await login(s.url);
  });
  after(async () => {
    await s?.stop();
    await backEnd.stop();
  });
  beforeEach(() => (backEnd.requests.length = 0));

  it("Herald's own credentials never reach the hook", async () => {
    const { frame, conn } = await stompConnect(s.server.address('stomp').port, { login: 'admin', passcode: ADMIN_PASSWORD });
    assert.equal(frame.command, 'CONNECTED');
    conn.close();
    const c = await mqtt.connectAsync(tcpUrl(s), { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 });
    await c.endAsync();
    const j = await JsonClient.open(jsonUrl(s, admin));
    j.close();
    assert.equal(backEnd.requests.length, 0);
  });

  it('STOMP over TCP and WebSocket: allowed as the user the back end names, refused with its reason; the hook is told what the client presented', async () => {
    const { frame, conn } = await stompConnect(s.server.address('stomp').port, { login: 'alice', passcode: 'app-alice' });
    assert.equal(frame.command, 'CONNECTED', frame.body.toString());
    assert.equal(frameHeader(frame, 'user-name'), 'alice');
    conn.close();
    assert.deepEqual(backEnd.requests[0], { protocol: 'stomp', transport: 'tcp', username: 'alice', password: 'app-alice', device: 'tcp', remoteAddress: '127.0.0.1' });
    const ws = await RawStomp.ws(wsUrl(s.url, '/stomp') + '?__token=app-dave');
    const connected = await ws.connect({});
    assert.equal(frameHeader(connected, 'user-name'), 'dave');
    ws.close();
    const last = backEnd.requests.at(-1)!;
    assert.equal(last['transport'], 'ws');
    assert.equal(last['path'], '/stomp');
    assert.equal(last['password'], 'app-dave');
    const refused = await stompConnect(s.server.address('stomp').port, { login: 'mallory', passcode: 'guess-1' });
    assert.equal(refused.frame.command, 'ERROR');
    assert.equal(frameHeader(refused.frame, 'message'), 'authentication failed');
    assert.match(refused.frame.body.toString(), /unknown app credential guess-1/);
  });

  it('MQTT 3.1.1 and 5: allowed, refused (bad user name or password), and a back end that is slow or failing refuses as server unavailable', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'app-bob', clientId: 'bob-phone', reconnectPeriod: 0 });
    await c.subscribeAsync('$user/inbox', { qos: 1 }).catch(() => undefined);
    await c.endAsync();
    assert.equal(backEnd.requests[0]!['clientId'], 'bob-phone');
    assert.equal(backEnd.requests[0]!['protocol'], 'mqtt');
    assert.equal(await refusedWith(tcpUrl(s), { username: 'bob', password: 'nope-1' }), 4);
    assert.equal(await refusedWith(tcpUrl(s), { username: 'bob', password: 'nope-2', protocolVersion: 5 }), 0x86);
    const started = Date.now();
    assert.equal(await refusedWith(tcpUrl(s), { username: 'bob', password: 'slow-1' }), 3);
    assert.ok(Date.now() - started < 3000, 'refused at authHookTimeoutMs, not after the back end');
    assert.equal(await refusedWith(tcpUrl(s), { username: 'bob', password: 'broken-1', protocolVersion: 5 }), 0x88);
  });

  it('JSON WebSocket: the token in the path goes to the hook; refusals are HTTP statuses at the handshake', async () => {
    const j = await JsonClient.open(jsonUrl(s, 'app-carol'));
    j.close();
    const req = backEnd.requests.at(-1)!;
    assert.equal(req['path'], '/websocket/', 'the token is not in the path the hook sees');
    assert.equal(req['password'], 'app-carol');
    await assert.rejects(JsonClient.open(jsonUrl(s, 'nope-json')), /refused with 401/);
    await assert.rejects(JsonClient.open(jsonUrl(s, 'slow-json')), /refused with 503/);
    await assert.rejects(JsonClient.open(jsonUrl(s, 'broken-json')), /refused with 503/);
  });

  it('a STOMP client is told "authentication unavailable" when the back end times out or fails', async () => {
    for (const passcode of ['slow-2', 'broken-2']) {
      const { frame } = await stompConnect(s.server.address('stomp').port, { login: 'x', passcode });
      assert.equal(frame.command, 'ERROR');
      assert.equal(frameHeader(frame, 'message'), 'authentication unavailable');
    }
  });

  it('caches each decision per credential over MQTT, STOMP and the JSON WebSocket: one request for repeated connects, allow and deny alike', async () => {
    for (let i = 0; i < 3; i++) {
      const c = await mqtt.connectAsync(tcpUrl(s), { username: 'erin', password: 'app-erin', clientId: `erin-${i}`, reconnectPeriod: 0 });
      await c.endAsync();
      assert.equal(await refusedWith(tcpUrl(s), { username: 'erin', password: 'denied-erin' }), 4);
    }
    assert.equal(backEnd.requests.length, 2);
    for (let i = 0; i < 3; i++) {
      const { frame, conn } = await stompConnect(s.server.address('stomp').port, { login: 'ivan', passcode: 'app-ivan' });
      assert.equal(frame.command, 'CONNECTED');
      conn.close();
      const j = await JsonClient.open(jsonUrl(s, 'app-judy'));
      j.close();
      await assert.rejects(JsonClient.open(jsonUrl(s, 'denied-judy')), /refused with 401/);
    }
    assert.equal(backEnd.requests.length, 5, 'STOMP and the JSON WebSocket: one request per credential too');
  });

  it('a user known only through the hook has a mailbox and stored messages, and its session ends at expiresAt', async () => {
    const j = await JsonClient.open(jsonUrl(s, 'app-frank'));
    const sent = await sendMessage(s, admin, { receiver: ['frank'], title: 'hello', content: 'for frank', type: 'NOTICE' });
    assert.equal(sent.receivers.length, 1);
    const got = await j.next('message');
    assert.equal((got.data as { content: string }).content, 'for frank');
    j.close();
    const users = await api<{ name: string; role: string }[]>(s.url, 'GET', '/api/users', { token: admin });
    assert.ok(users.body.data.some((u) => u.name === 'frank' && u.role === 'user'), 'made a Herald user on first sight');
    // A password login is not a way into a user of the hook (and does not count against anyone).
    assert.equal((await api(s.url, 'POST', '/v1/login', { body: { username: 'frank', password: 'anything' } })).status, 401);

    const { frame, conn } = await stompConnect(s.server.address('stomp').port, { login: 'gina', passcode: 'short-gina' });
    assert.equal(frame.command, 'CONNECTED');
    const ended = await conn.next('ERROR', 5000);
    assert.equal(frameHeader(ended, 'message'), 'token expired');
    await conn.closedPromise;
  });
});

describe('the connect hook, always mode', () => {
  const backEnd = new BackEnd();
  let s: TestServer;

  before(async () => {
    await backEnd.start();
    backEnd.policy = (b) => (b['username'] === 'admin' && b['password'] === ADMIN_PASSWORD ? { body: { allow: false, reason: 'admins log in through the office VPN' } } : appPolicy(b));
    s = await startServer({ authHookUrl: backEnd.url, authHookMode: 'always' });
  });
  after(async () => {
    await s?.stop();
    await backEnd.stop();
  });

  it("asks the hook even for Herald's own users, and its answer stands", async () => {
    const { frame } = await stompConnect(s.server.address('stomp').port, { login: 'admin', passcode: ADMIN_PASSWORD });
    assert.equal(frame.command, 'ERROR');
    assert.match(frame.body.toString(), /office VPN/);
    assert.equal(await refusedWith(tcpUrl(s), { username: 'admin', password: ADMIN_PASSWORD }), 4);
    const c = await mqtt.connectAsync(tcpUrl(s), { username: 'x', password: 'app-helen', reconnectPeriod: 0 });
    await c.endAsync();
    assert.equal(backEnd.requests.length, 2, 'the refusal was cached; two credentials, two requests');
  });
});
