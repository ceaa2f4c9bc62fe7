/**
 * Listener control and exposure: each listener on its own address; the
 * admin port (metrics, console, admin API there and 404 on the public
 * port, the console's login in a real browser); per-listener connection
 * caps refused in each protocol's words (STOMP ERROR, MQTT 3.1.1 CONNACK 3,
 * MQTT 5 CONNACK 0x97, JSON WebSocket close 1013) with the slot free again
 * once a client leaves; and a start that fails on a port in use creates no
 * admin user.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { chromium } from 'playwright-core';
import { PORT_OFF } from '../../src/config.js';
import { JsonClient } from '../helpers/json-ws.js';
import { ADMIN, RawMqtt, refusedWith, tcpUrl } from '../helpers/mqtt.js';
import { runCommand, runHerald } from '../helpers/process.js';
import { ADMIN_PASSWORD, api, login, startServer, type TestServer } from '../helpers/server.js';
import { frameHeader, RawStomp, wsUrl } from '../helpers/stomp.js';
import { makePki, opensslMissing, type TestPki } from '../helpers/tls-certs.js';

/** Connects to host:port; resolves with the socket, or with the error code (ECONNREFUSED) when nothing listens there. */
function tryConnect(host: string, port: number): Promise<Socket | string> {
  return new Promise((resolve) => {
    const s = connect(port, host, () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** The value of herald_protocol_errors_total for a protocol and reason. */
async function protocolErrors(base: string, protocol: string, reason: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^herald_protocol_errors_total\\{protocol="${protocol}",reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('each listener binds its own address', () => {
  let s: TestServer;
  let pki: TestPki | undefined;
  before(async () => {
    pki = opensslMissing() ? undefined : makePki();
    s = await startServer({
      stompHost: '127.0.0.2',
      mqttHost: '127.0.0.3',
      ...(pki ? { tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey, httpsPort: 0, httpsHost: '127.0.0.5', stompTlsPort: PORT_OFF, mqttTlsPort: 0, mqttTlsHost: '127.0.0.4' } : {}),
    });
  });
  after(async () => {
    await s.stop();
    pki?.destroy();
  });

  it('prints the bound address of each, and nothing listens on that port at host', async () => {
    const expected: [string, string][] = [
      ['http', '127.0.0.1'],
      ['stomp', '127.0.0.2'],
      ['mqtt', '127.0.0.3'],
      ...(pki ? ([['https', '127.0.0.5'], ['mqtt-tls', '127.0.0.4']] as [string, string][]) : []),
    ];
    for (const [name, host] of expected) {
      const port = s.server.address(name).port;
      assert.ok(s.lines.includes(`listening ${name} ${host}:${port}`), `${name}: ${s.lines.join(' | ')}`);
      if (host === '127.0.0.1') continue;
      assert.equal(await tryConnect('127.0.0.1', port), 'ECONNREFUSED', `${name} is not on 127.0.0.1`);
    }
  });

  it('the clients reach each listener on its own address', async () => {
    const stompPort = s.server.address('stomp').port;
    const socket = await tryConnect('127.0.0.2', stompPort);
    assert.ok(typeof socket !== 'string', `STOMP on 127.0.0.2: ${String(socket)}`);
    const got = new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    socket.write(`CONNECT\naccept-version:1.2\nlogin:admin\npasscode:${ADMIN_PASSWORD}\n\n\0`);
    assert.match(await got, /^CONNECTED\n/);
    socket.destroy();
    const c = await mqtt.connectAsync(`mqtt://127.0.0.3:${s.server.address('mqtt').port}`, ADMIN);
    await c.endAsync();
    if (pki) {
      const t = await mqtt.connectAsync(`mqtts://127.0.0.4:${s.server.address('mqtt-tls').port}`, { ...ADMIN, ca: pki.read(pki.ca), servername: 'localhost' });
      await t.endAsync();
    }
  });

  it('without adminPort, /metrics and the admin API stay on the HTTP port', async () => {
    assert.equal((await fetch(`${s.url}/metrics`)).status, 200);
    assert.equal((await api(s.url, 'GET', '/api/users', { token: await login(s.url) })).status, 200);
  });
});

const built = existsSync(fileURLToPath(new URL('../../dist/web/console/index.html', import.meta.url)));

describe('adminPort: the admin surface on its own listener', () => {
  let s: TestServer;
  let adminUrl: string;
  let token: string;
  before(async () => {
    s = await startServer({ adminPort: 0 });
    const a = s.server.address('admin');
    adminUrl = `http://127.0.0.1:${a.port}`;
    token = await login(s.url);
  });
  after(() => s.stop());

  it('prints a listening line for it, on adminHost (127.0.0.1 by default)', () => {
    assert.ok(s.lines.includes(`listening admin 127.0.0.1:${s.server.address('admin').port}`), s.lines.join(' | '));
  });

  it('the public port answers 404 for /metrics, /console, /api/admin/* and the admin-only API, even to an admin', async () => {
    const moved: [string, string][] = [
      ['GET', '/metrics'],
      ['HEAD', '/metrics'],
      ['GET', '/console'],
      ['GET', '/console/'],
      ['GET', '/console/index.html'],
      ['GET', '/api/admin/overview'],
      ['POST', '/api/admin/sessions/x/disconnect'],
      ['GET', '/api/users'],
      ['POST', '/api/users'],
      ['PATCH', '/api/users/1'],
      ['POST', '/api/users/1/revoke-tokens'],
      ['GET', '/api/apps'],
      ['POST', '/api/apps'],
    ];
    for (const [method, path] of moved) {
      const res = await fetch(s.url + path, { method, headers: { 'x-auth-token': token, 'content-type': 'application/json' }, ...(method === 'GET' || method === 'HEAD' ? {} : { body: '{}' }) });
      assert.equal(res.status, 404, `${method} ${path}`);
      if (method !== 'HEAD') assert.match(((await res.json()) as { message: string }).message, /admin port, adminPort/);
    }
  });

  it('the public port still serves the public API, the service routes and the WebSocket paths', async () => {
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
    assert.equal((await api(s.url, 'GET', '/v1/me', { token })).status, 200);
    assert.equal((await api(s.url, 'GET', '/api/message/getWebSocketClients', { token })).status, 200);
    assert.equal((await api(s.url, 'POST', '/api/publish', { token, body: { destination: '/topic/x', body: 'hi' } })).status, 200);
    const c = await RawStomp.ws(wsUrl(s.url, `/stomp?__token=${token}`));
    assert.equal((await c.connect({})).command, 'CONNECTED');
    c.close();
  });

  it('the admin port serves /metrics, the console, the admin API, the login and the console\'s STOMP WebSocket', async () => {
    const metrics = await fetch(`${adminUrl}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^# HELP herald_/m);
    const consolePage = await fetch(`${adminUrl}/console/`);
    // 503 says the console is not built (npm run build); served or not, it is the admin port that answers.
    assert.equal(consolePage.status, built ? 200 : 503);
    const adminToken = await login(adminUrl);
    for (const path of ['/api/admin/overview', '/api/users', '/api/apps', '/api/message/getWebSocketClients']) {
      assert.equal((await api(adminUrl, 'GET', path, { token: adminToken })).status, 200, path);
    }
    const c = await RawStomp.ws(wsUrl(adminUrl, `/stomp?__token=${adminToken}`));
    assert.equal((await c.connect({})).command, 'CONNECTED');
    c.close();
  });

  const browser = process.env['HERALD_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
  const skipBrowser = !built ? 'needs the built console (npm run build)' : !existsSync(browser) ? `needs Chromium at ${browser}` : false;
  it('the console logs in on the admin port and shows the overview', { skip: skipBrowser }, async () => {
    const b = await chromium.launch({ executablePath: browser, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
    try {
      const page = await b.newPage();
      page.setDefaultTimeout(10_000);
      await page.goto(`${adminUrl}/console/`);
      await page.getByLabel('User name').fill('admin');
      await page.getByLabel('Password').fill(ADMIN_PASSWORD);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.getByRole('heading', { name: 'Overview' }).waitFor();
      await page.locator('dd', { hasText: 'sqlite' }).waitFor();
    } finally {
      await b.close();
    }
  });
});

describe('per-listener connection caps', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ stompMaxConnections: 1, mqttMaxConnections: 1, httpMaxConnections: 1 });
  });
  after(() => s.stop());

  it('STOMP: a connection past the cap gets an ERROR saying the listener is full, then is closed; a slot frees when a client leaves', async () => {
    const port = s.server.address('stomp').port;
    const before = await protocolErrors(s.url, 'stomp-tcp', 'listener_full');
    const first = await RawStomp.tcp(port);
    assert.equal((await first.connect({ login: 'admin', passcode: ADMIN_PASSWORD })).command, 'CONNECTED');
    const second = await RawStomp.tcp(port);
    const refused = await second.connect({ login: 'admin', passcode: ADMIN_PASSWORD, receipt: 'r1' });
    assert.equal(refused.command, 'ERROR');
    assert.equal(frameHeader(refused, 'message'), 'listener stomp is full');
    assert.equal(frameHeader(refused, 'receipt-id'), 'r1');
    assert.match(refused.body.toString(), /^listener "stomp" is full: it holds its limit of 1 connections \(stompMaxConnections\); try again later$/);
    await second.closedPromise;
    assert.equal(await protocolErrors(s.url, 'stomp-tcp', 'listener_full'), before + 1);

    first.send('DISCONNECT\n\n\0');
    await first.closedPromise;
    const third = await eventually('a free STOMP slot', async () => {
      const c = await RawStomp.tcp(port);
      const f = await c.connect({ login: 'admin', passcode: ADMIN_PASSWORD });
      if (f.command === 'CONNECTED') return c;
      await c.closedPromise;
      return undefined;
    });
    // The refused connection took no slot: the one that came back holds the only one.
    const fourth = await RawStomp.tcp(port);
    assert.equal((await fourth.connect({ login: 'admin', passcode: ADMIN_PASSWORD })).command, 'ERROR');
    third.close();
  });

  it('MQTT: past the cap, 3.1.1 gets CONNACK 3 (server unavailable) and 5.0 gets 0x97 (quota exceeded) with the reason; a slot frees when a client leaves', async () => {
    const before = await protocolErrors(s.url, 'mqtt-tcp', 'listener_full');
    const first = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'cap-first' });
    assert.equal(await refusedWith(tcpUrl(s), { ...ADMIN, clientId: 'cap-v4', protocolVersion: 4 }), 3);
    assert.equal(await refusedWith(tcpUrl(s), { ...ADMIN, clientId: 'cap-v5', protocolVersion: 5 }), 0x97);
    const raw = await RawMqtt.open(s.server.address('mqtt').port, 5);
    const connack = await raw.connect('cap-raw', 'admin', ADMIN_PASSWORD);
    assert.equal(connack.reasonCode, 0x97);
    assert.match(connack.properties?.reasonString ?? '', /^listener "mqtt" is full: .*\(mqttMaxConnections\)/);
    await raw.closed;
    assert.equal(await protocolErrors(s.url, 'mqtt-tcp', 'listener_full'), before + 3);

    await first.endAsync();
    const again = await eventually('a free MQTT slot', async () => ((await refusedWith(tcpUrl(s), { ...ADMIN, clientId: 'cap-again' })) === 0 ? true : undefined));
    assert.equal(again, true);
  });

  it('JSON WebSocket: past the HTTP listener\'s cap the session is closed with 1013 and the reason; a slot frees when a client leaves', async () => {
    const token = await login(s.url);
    const url = wsUrl(s.url, `/websocket/${token}`);
    const before = await protocolErrors(s.url, 'json-ws', 'listener_full');
    const first = await JsonClient.open(url);
    const second = await JsonClient.open(url);
    await second.closed;
    assert.equal(second.closeCode, 1013);
    assert.match(second.closeReason, /^listener "http" is full: it holds its limit of 1 connections \(httpMaxConnections\); try again later$/);
    assert.equal(await protocolErrors(s.url, 'json-ws', 'listener_full'), before + 1);
    const sessions = async (): Promise<number> =>
      (await api<{ protocol: string }[]>(s.url, 'GET', '/api/message/getWebSocketClients', { token })).body.data.filter((c) => c.protocol === 'json-ws').length;
    assert.equal(await sessions(), 1, 'the refused session never started');

    // The STOMP and MQTT WebSocket paths share the HTTP listener's cap, and refuse in their own words.
    const stomp = await RawStomp.ws(wsUrl(s.url, `/stomp?__token=${token}`));
    const closeCode = new Promise<number>((resolve) => stomp.socket.once('close', (code) => resolve(code)));
    const error = await stomp.connect({});
    assert.equal(error.command, 'ERROR');
    assert.equal(frameHeader(error, 'message'), 'listener http is full');
    assert.equal(await closeCode, 1013);
    assert.equal(await refusedWith(wsUrl(s.url, '/mqtt'), { ...ADMIN, clientId: 'cap-ws', protocolVersion: 5 }), 0x97);

    first.ws.close();
    await first.closed;
    const third = await eventually('a free HTTP listener slot', async () => {
      const c = await JsonClient.open(url);
      const outcome = await Promise.race([c.closed.then(() => 'closed'), eventually('the session', async () => ((await sessions()) === 1 ? 'listed' : undefined))]);
      return outcome === 'listed' ? c : undefined;
    });
    assert.equal(third.closeCode, undefined);
    third.ws.close();
  });
});

describe('start-up creates the first admin only once every listener is bound', () => {
  let busy: Server;
  let dir: string;
  before(async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    dir = mkdtempSync(join(tmpdir(), 'herald-startup-'));
  });
  after(() => {
    busy.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a start that fails on a port in use says so in one line and leaves no admin; the next start creates it and prints its password', async () => {
    const taken = String((busy.address() as { port: number }).port);
    const flags = ['--host', '127.0.0.1', '--http-port', '0', '--mqtt-port', '0', '--data-dir', dir];
    for (const [flag, value] of [['--stomp-port', taken], ['--admin-port', taken]] as const) {
      const p = runHerald(['serve', ...flags, '--stomp-port', '0', flag, value]);
      const { code } = await p.exited;
      assert.equal(code, 1, p.stderr);
      assert.match(p.stderr, new RegExp(`^herald: cannot listen on 127\\.0\\.0\\.1:${taken}: the address is in use; pick another port or stop the other process\\n$`));
      assert.ok(!p.stdout.some((l) => l.startsWith('admin password')), `${flag}: no admin password printed: ${p.stdout.join('\n')}`);
    }
    const p = runHerald(['serve', ...flags, '--stomp-port', '0']);
    try {
      const [, password] = (await p.waitFor(/^admin password: (\S+)$/))!;
      const [, port] = (await p.waitFor(/^listening http 127\.0\.0\.1:(\d+)$/))!;
      assert.equal(typeof (await login(`http://127.0.0.1:${port}`, 'admin', password!)), 'string');
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  });
});

describe('check-config reads the listener keys as start-up does', () => {
  it('refuses proxyProtocol without trustedProxies, a trustedProxies entry that is no address, and an own host that is not this machine\'s', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herald-check-'));
    try {
      const env = { HERALD_DATA_DIR: join(dir, 'data') };
      const none = await runCommand(['check-config', '--proxy-protocol'], env);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /^herald: proxyProtocol is on but trustedProxies is empty: list the addresses or CIDR ranges of the proxies/m);
      const bad = await runCommand(['check-config', '--trusted-proxies', '10.0.0.1,haproxy.internal'], env);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /^herald: trustedProxies: "haproxy\.internal" is not an IP address or CIDR range/m);
      const host = await runCommand(['check-config', '--admin-port', '9190', '--admin-host', '192.0.2.1'], env);
      assert.equal(host.code, 1);
      assert.match(host.stderr, /^herald: adminHost 192\.0\.2\.1 is not an address of this machine/m);
      // serve stops at once, in one line, having created nothing.
      const serve = await runCommand(['serve', '--proxy-protocol', '--host', '127.0.0.1', '--http-port', '0', '--stomp-port', '0', '--mqtt-port', '0'], env);
      assert.equal(serve.code, 2, serve.stderr);
      assert.match(serve.stderr, /^herald: proxyProtocol is on but trustedProxies is empty: [^\n]+\n$/);
      assert.ok(!existsSync(join(dir, 'data')), 'no data directory was created');
      const good = await runCommand(['check-config', '--proxy-protocol', '--trusted-proxies', '10.0.0.0/8, ::1', '--stomp-host', '127.0.0.2', '--admin-port', '9190'], env);
      assert.equal(good.code, 0, good.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
