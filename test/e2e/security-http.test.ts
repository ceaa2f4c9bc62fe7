/**
 * Attacks on the HTTP API, each against a real server: slow requests that
 * hold sockets, JSON nested deep enough to overflow the stack, tokens that
 * leak into logs, answers a browser may cache or sniff, a CORS preflight
 * that grants any header, locking out the last admin, and publishing to
 * topics only the server writes. Plus the chat send's answer shape for the
 * customer-service client's HTTP fallback.
 */
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { logOptions } from '../../src/log.js';
import { JsonClient, type JsonEvent } from '../helpers/json-ws.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';

const DEEP = 100_000;
const deepArray = (n: number): string => '['.repeat(n) + ']'.repeat(n);

function rawTcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** A socket with what it received and when it closed. */
interface Watched {
  socket: Socket;
  received: () => string;
  closed: Promise<number>;
}

function watch(socket: Socket, since = Date.now()): Watched {
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => undefined);
  return {
    socket,
    received: () => text,
    closed: new Promise((resolve) => {
      if (socket.destroyed) resolve(Date.now() - since);
      else socket.once('close', () => resolve(Date.now() - since));
    }),
  };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** One GET on a fresh connection (no keep-alive pool): the status, or 0 if the connection was closed without one. */
async function rawGet(port: number, path: string): Promise<number> {
  const w = watch(await rawTcp(port));
  w.socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  await within(w.closed, 5000, `GET ${path}`);
  const m = /^HTTP\/1\.1 (\d{3})/.exec(w.received());
  return m ? Number(m[1]) : 0;
}

/** Log lines written by a server, as text and parsed. */
function captureLog(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

describe('slow HTTP requests time out, and the address cap frees up when they do', () => {
  let srv: TestServer;
  let port: number;
  before(async () => {
    srv = await startServer({ httpRequestTimeoutSeconds: 2, maxUnauthenticatedPerAddress: 20 });
    port = Number(new URL(srv.url).port);
  });
  after(() => srv.stop());

  it('a request that sends its headers and then dribbles its body is answered 408 and closed within httpRequestTimeoutSeconds', async () => {
    const t0 = Date.now();
    const w = watch(await rawTcp(port), t0);
    w.socket.write('POST /v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{');
    const drip = setInterval(() => w.socket.writable && w.socket.write(' '), 200);
    try {
      const took = await within(w.closed, 4500, 'slow body closed');
      assert.ok(took >= 1900 && took < 4000, `closed after ${took} ms`);
      assert.match(w.received(), /^HTTP\/1\.1 408 /);
      assert.match(w.received(), /"code":408,"message":"the request did not arrive whole within 2 s \(httpRequestTimeoutSeconds\)/);
    } finally {
      clearInterval(drip);
      w.socket.destroy();
    }
  });

  it('a request that never finishes its headers is answered 408 and closed as well', async () => {
    const t0 = Date.now();
    const w = watch(await rawTcp(port), t0);
    w.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
    const drip = setInterval(() => w.socket.writable && w.socket.write('X-Slow: 1\r\n'), 200);
    try {
      const took = await within(w.closed, 4500, 'slow headers closed');
      assert.ok(took < 4000, `closed after ${took} ms`);
      assert.match(w.received(), /^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(drip);
      w.socket.destroy();
    }
  });

  it('40 slow connections from one address: past maxUnauthenticatedPerAddress they get 429 at once; when the slow ones time out, /healthz and STOMP answer again', async () => {
    const t0 = Date.now();
    const slow: Watched[] = [];
    for (let i = 0; i < 40; i++) {
      const w = watch(await rawTcp(port), t0);
      // Half never finish their headers, half dribble a body.
      w.socket.write(i % 2 === 0 ? 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n' : 'POST /v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{');
      slow.push(w);
    }
    const drip = setInterval(() => {
      slow.forEach((w, i) => w.socket.writable && w.socket.write(i % 2 === 0 ? 'X-Slow: 1\r\n' : ' '));
    }, 250);
    try {
      // The address now holds its 20: the 21st and later were refused at once, and a healthy call from it is too.
      await new Promise((r) => setTimeout(r, 300));
      const refused = slow.filter((w) => /^HTTP\/1\.1 429 /.test(w.received()));
      assert.equal(refused.length, 20, 'every connection past the 20th is refused with 429');
      for (const w of refused) await within(w.closed, 1000, 'refused connection closed');
      assert.equal(await rawGet(port, '/healthz'), 429, 'the cap holds for every connection from the address');

      // The 20 slow ones are answered 408 and closed by the request timeout...
      const held = slow.filter((w) => !refused.includes(w));
      const took = await within(Promise.all(held.map((w) => w.closed)), 4500, 'slow connections closed');
      assert.ok(Math.max(...took) < 4000, `the last slow connection closed after ${Math.max(...took)} ms`);
      assert.deepEqual(held.map((w) => w.received().slice(0, 12)).filter((r) => r !== 'HTTP/1.1 408'), [], 'each slow request was answered 408');
    } finally {
      clearInterval(drip);
      for (const w of slow) w.socket.destroy();
    }
    // ... and the address may connect again: HTTP and STOMP over TCP.
    assert.equal(await rawGet(port, '/healthz'), 200);
    const stomp = await RawStomp.tcp(srv.server.address('stomp').port);
    const token = await login(srv.url);
    assert.equal((await stomp.connect({ login: token })).command, 'CONNECTED');
    stomp.close();
  });
});

describe('JSON nested 100,000 deep is refused with 400 naming the limit, and logs no error', () => {
  let srv: TestServer;
  let admin: string;
  const log = captureLog();
  before(async () => {
    srv = await startServer({}, undefined, undefined, pino({ level: 'trace' }, log.stream));
    admin = await login(srv.url);
    await api(srv.url, 'POST', '/api/users', { token: admin, body: { name: 'deep-member', password: 'deep-member-pw' } });
    await api(srv.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'deep/t1', members: [{ user: 'deep-member', role: 'visitor' }] } });
  });
  after(() => srv.stop());

  const errorLines = (): string[] => log.lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);

  it('POST /api/publish with a deep body', async () => {
    const r = await api(srv.url, 'POST', '/api/publish', { token: admin, body: `{"destination":"/topic/deep","body":${deepArray(DEEP)}}` });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /JSON nested deeper than 100 levels/);
  });

  it('a deep body on a route without a schema, and on login', async () => {
    for (const path of ['/api/message/collectMessage', '/v1/login', '/api/v1/thread']) {
      const r = await api(srv.url, 'POST', path, { token: admin, body: `{"x":${deepArray(DEEP)}}` });
      assert.equal(r.status, 400, path);
      assert.match(r.body.message, /JSON nested deeper than 100 levels/, path);
    }
  });

  it('a deep chat message sent as JSON text (text/plain) to the chat send', async () => {
    const member = await login(srv.url, 'deep-member', 'deep-member-pw');
    const text = JSON.stringify({ uid: 'u1', type: 'TEXT', content: 'x', thread: { topic: 'deep/t1' } }).replace('"x"', `"x","extra":${deepArray(DEEP)}`);
    const r = await api(srv.url, 'POST', '/api/v1/message/send', { token: member, body: text, headers: { 'content-type': 'text/plain' } });
    assert.equal(r.body.code, 400);
    assert.match(r.body.message, /JSON nested deeper than 100 levels/);
  });

  it('JSON exactly 100 levels deep is still accepted', async () => {
    const r = await api(srv.url, 'POST', '/api/publish', { token: admin, body: `{"destination":"/topic/deep","body":${deepArray(99)}}` });
    assert.equal(r.status, 200, r.body.message);
  });

  it('none of it was logged as an error', () => {
    assert.deepEqual(errorLines(), []);
  });
});

describe('credentials never reach the log', () => {
  let srv: TestServer;
  let admin: string;
  const log = captureLog();
  before(async () => {
    srv = await startServer({}, undefined, undefined, pino({ level: 'trace' }, log.stream));
    admin = await login(srv.url);
  });
  after(() => srv.stop());

  it('a 5xx with the token in the URL logs the URL without it', async () => {
    const store = srv.server.ctx.store as { listUsers: () => Promise<unknown> };
    const real = store.listUsers;
    store.listUsers = () => Promise.reject(new Error('the disk is on fire'));
    try {
      const r = await api(srv.url, 'GET', `/api/users?__token=${encodeURIComponent(admin)}&page=1`);
      assert.equal(r.status, 500);
    } finally {
      store.listUsers = real;
    }
    const failed = log.lines.find((l) => l.includes('request failed'));
    assert.ok(failed, 'the 5xx was logged');
    assert.match(failed, /"url":"\/api\/users\?__token=\[redacted\]&page=1"/);
    assert.ok(!log.lines.some((l) => l.includes(admin)), 'the token appears in no log line');
  });

  it('refused requests logged at debug carry no token, password or passcode either', async () => {
    for (const name of ['__token', 'token', 'access_token', 'passcode', 'password']) {
      await api(srv.url, 'GET', `/v1/me?${name}=leaked-${name}-value`);
      await api(srv.url, 'GET', `/no/such/route?${name}=leaked-${name}-value`);
    }
    await api(srv.url, 'GET', '/v1/me', { headers: { authorization: 'Bearer leaked-bearer-value', 'x-auth-token': 'leaked-header-value' } });
    assert.ok(log.lines.some((l) => l.includes('request refused')), 'refusals were logged');
    assert.deepEqual(log.lines.filter((l) => /leaked-/.test(l)), []);
  });

  it("Herald's own logger blanks credentials whoever logs them: header objects, fields, URLs, error messages", () => {
    const own = captureLog();
    const logger = pino(logOptions({ logLevel: 'trace' }), own.stream);
    logger.info({ req: { headers: { authorization: 'Bearer s1', 'x-auth-token': 's2' } }, headers: { 'x-auth-token': 's3' } }, 'headers');
    logger.info({ body: { password: 's4', passcode: 's5' }, token: 's6' }, 'fields');
    logger.warn({ url: '/websocket/s7?x=1', link: 'http://h/api?access_token=s8' }, 'urls');
    logger.error({ err: new Error('could not load /x?passcode=s9') }, 'body {"password":"s10"} and Authorization: Bearer s11');
    assert.equal(own.lines.length, 4);
    assert.deepEqual(own.lines.filter((l) => /\bs\d+\b/.test(l)), []);
  });
});

describe('API answers are neither cached nor sniffed, and the CORS preflight grants a fixed list of headers', () => {
  let srv: TestServer;
  let admin: string;
  before(async () => {
    srv = await startServer();
    admin = await login(srv.url);
  });
  after(() => srv.stop());

  it('successes, refusals and 404s carry nosniff and no-store', async () => {
    for (const [path, token] of [['/healthz', undefined], ['/api/users', admin], ['/v1/me', undefined], ['/no/such', undefined]] as const) {
      const r = await fetch(srv.url + path, { headers: token ? { 'x-auth-token': token } : {} });
      await r.arrayBuffer();
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(r.headers.get('cache-control'), 'no-store', path);
    }
  });

  it('the console page keeps its own caching', async () => {
    const r = await fetch(srv.url + '/console/');
    await r.arrayBuffer();
    if (r.status === 200) assert.equal(r.headers.get('cache-control'), 'no-cache');
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  });

  it('a preflight asking for any header is granted only the fixed list', async () => {
    const r = await fetch(srv.url + '/api/publish', {
      method: 'OPTIONS',
      headers: { origin: 'http://elsewhere.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-evil, content-type, cookie' },
    });
    assert.equal(r.status, 204);
    const allowed = (r.headers.get('access-control-allow-headers') ?? '').split(',').map((h) => h.trim().toLowerCase());
    assert.deepEqual(allowed.sort(), ['authorization', 'content-type', 'x-auth-token', 'x-requested-with']);
  });
});

describe('the last active admin cannot be disabled or demoted', () => {
  let srv: TestServer;
  let admin: string;
  let adminId: string;
  before(async () => {
    srv = await startServer();
    admin = await login(srv.url);
    adminId = (await api<{ userId: string }>(srv.url, 'GET', '/v1/me', { token: admin })).body.data.userId;
  });
  after(() => srv.stop());

  it('the only admin disabling or demoting itself gets 409 and stays an active admin', async () => {
    for (const patch of [{ disabled: true }, { role: 'user' }, { role: 'service' }]) {
      const r = await api(srv.url, 'PATCH', `/api/users/${adminId}`, { token: admin, body: patch });
      assert.equal(r.status, 409, JSON.stringify(patch));
      assert.match(r.body.message, /"admin" is the last active admin/);
    }
    const me = await api<{ role: string }>(srv.url, 'GET', '/v1/me', { token: admin });
    assert.equal(me.status, 200, 'the token still works');
    assert.equal(me.body.data.role, 'admin');
    // A new password is no lock-out.
    assert.equal((await api(srv.url, 'PATCH', `/api/users/${adminId}`, { token: admin, body: { password: 'admin-secret-pw' } })).status, 200);
  });

  it('with a second admin either may go, but not both, even when both ask at once', async () => {
    admin = await login(srv.url);
    const second = await api<{ id: string }>(srv.url, 'POST', '/api/users', { token: admin, body: { name: 'admin2', password: 'admin2-password', role: 'admin' } });
    const secondId = second.body.data.id;
    const secondToken = await login(srv.url, 'admin2', 'admin2-password');
    // Both step down at the same moment: exactly one may.
    const [a, b] = await Promise.all([
      api(srv.url, 'PATCH', `/api/users/${adminId}`, { token: admin, body: { disabled: true } }),
      api(srv.url, 'PATCH', `/api/users/${secondId}`, { token: secondToken, body: { role: 'user' } }),
    ]);
    assert.deepEqual([a.status, b.status].sort(), [200, 409]);
    const users = await api<{ role: string; disabled: boolean }[]>(srv.url, 'GET', '/api/users', { token: a.status === 200 ? secondToken : admin });
    assert.equal(users.body.data.filter((u) => u.role === 'admin' && !u.disabled).length, 1);
  });
});

describe('topics only the server writes are refused to POST /api/publish', () => {
  let srv: TestServer;
  let admin: string;
  let member: string;
  before(async () => {
    srv = await startServer({ sysIntervalSeconds: 0 });
    admin = await login(srv.url);
    await api(srv.url, 'POST', '/api/users', { token: admin, body: { name: 'svc', password: 'svc-password', role: 'service' } });
    await api(srv.url, 'POST', '/api/users', { token: admin, body: { name: 'member1', password: 'member1-password' } });
    const t = await api(srv.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'org1/visitor/v1', members: [{ user: 'member1', role: 'visitor' }] } });
    assert.equal(t.status, 200, t.body.message);
    member = await login(srv.url, 'member1', 'member1-password');
  });
  after(() => srv.stop());

  it('a chat-thread topic and $SYS are refused with 403 and the reason; the admin on $SYS/# and the thread member get nothing', async () => {
    const ws = srv.url.replace(/^http/, 'ws') + '/websocket/';
    const sys = await JsonClient.open(ws + admin);
    sys.send({ action: 'subscribe', topic: '$SYS.#' });
    await sys.next('ok');
    const inThread = await JsonClient.open(ws + member);
    inThread.send({ action: 'subscribe', topic: 'org1.visitor.v1' });
    await inThread.next('ok');

    const svc = await login(srv.url, 'svc', 'svc-password');
    const forged = { status: 'SUCCESS', uid: 'forged-1', type: 'TEXT', content: 'forged', user: { uid: 'member1' } };
    for (const token of [admin, svc]) {
      const thread = await api(srv.url, 'POST', '/api/publish', { token, body: { destination: '/topic/org1.visitor.v1', body: forged } });
      assert.equal(thread.status, 403);
      assert.match(thread.body.message, /org1\.visitor\.v1 is a chat thread/);
      const version = await api(srv.url, 'POST', '/api/publish', { token, body: { destination: '/topic/$SYS.broker.version', body: 'forged 9.9.9' } });
      assert.equal(version.status, 403);
      assert.match(version.body.message, /written by the server only/);
    }
    // A message through the thread service still reaches the member: the path above was live.
    const sent = await api(srv.url, 'POST', '/api/v1/message/send', { token: member, body: { uid: 'real-1', type: 'TEXT', content: 'real', thread: { topic: 'org1/visitor/v1' } } });
    assert.equal(sent.body.code, 200, sent.body.message);
    const real = await inThread.next('topic');
    assert.match(JSON.stringify(real.data), /real-1/);
    await sys.sync();
    await inThread.sync();
    const forgedSeen = (events: JsonEvent[]): JsonEvent[] => events.filter((e) => /forged/.test(JSON.stringify(e)));
    assert.deepEqual(forgedSeen(sys.events), []);
    assert.deepEqual(forgedSeen(inThread.events), []);
    sys.close();
    inThread.close();
  });
});

describe('the chat send (the customer-service client HTTP fallback) answers refusals with HTTP 200 and the code in the envelope', () => {
  let srv: TestServer;
  let admin: string;
  let member: string;
  let stranger: string;
  const message = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    uid: `u-${Math.random().toString(36).slice(2)}`,
    type: 'TEXT',
    content: 'hello',
    thread: { topic: 'shop/1' },
    ...extra,
  });
  before(async () => {
    srv = await startServer();
    admin = await login(srv.url);
    for (const name of ['buyer', 'stranger']) await api(srv.url, 'POST', '/api/users', { token: admin, body: { name, password: `${name}-password` } });
    await api(srv.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'shop/1', members: [{ user: 'buyer', role: 'visitor' }] } });
    await api(srv.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'shop/closed', members: [{ user: 'buyer', role: 'visitor' }] } });
    member = await login(srv.url, 'buyer', 'buyer-password');
    stranger = await login(srv.url, 'stranger', 'stranger-password');
    await api(srv.url, 'POST', '/api/v1/thread/shop.closed/close', { token: admin });
  });
  after(() => srv.stop());

  it('success: 200 and code 200', async () => {
    const r = await api<{ status: string }>(srv.url, 'POST', '/api/v1/message/send', { token: member, body: message() });
    assert.equal(r.status, 200);
    assert.equal(r.body.code, 200);
    assert.equal(r.body.data.status, 'SUCCESS');
  });

  it('not a member, no such thread, closed thread, bad content, a body that is not JSON: 200 with the refusal', async () => {
    const cases: [string, Parameters<typeof api>[3], number, RegExp][] = [
      ['not a member', { token: stranger, body: message() }, 403, /not a member/],
      ['no such thread', { token: member, body: message({ thread: { topic: 'shop/none' } }) }, 404, /no thread shop\.none/],
      ['closed thread', { token: member, body: message({ thread: { topic: 'shop/closed' } }) }, 400, /is closed/],
      ['unknown type', { token: member, body: message({ type: 'NOPE' }) }, 400, /unknown type "NOPE"/],
      ['not JSON', { token: member, body: '{"uid":', headers: { 'content-type': 'application/json' } }, 400, /not valid JSON/],
    ];
    for (const [what, opts, code, message] of cases) {
      const r = await api(srv.url, 'POST', '/api/v1/message/send', opts);
      assert.equal(r.status, 200, what);
      assert.equal(r.body.code, code, what);
      assert.match(r.body.message, message, what);
    }
  });

  it('authentication failures keep their HTTP status (401)', async () => {
    const none = await api(srv.url, 'POST', '/api/v1/message/send', { body: message() });
    assert.equal(none.status, 401);
    const dead = await api(srv.url, 'POST', '/api/v1/message/send', { token: 'not-a-token', body: message() });
    assert.equal(dead.status, 401);
  });
});
