/**
 * Who a TLS client is, beyond the handshake: with tlsClientCertAsUser the
 * verified client certificate's CN names the Herald user (mosquitto's
 * use_identity_as_username) over MQTT and STOMP, and a certificate naming
 * nobody, a disabled user or no CN at all is refused in each protocol's
 * words. And Chromium opening the console over HTTPS with the test CA
 * trusted the way a browser trusts one: in its certificate store (NSS), not
 * by switching checks off.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { chromium } from 'playwright-core';
import { api, ADMIN_PASSWORD, login, startServer, type TestServer } from '../helpers/server.js';
import { makePki, opensslMissing, type TestPki } from '../helpers/tls-certs.js';

const skip = opensslMissing();
if (skip && process.env['CI']) throw new Error('openssl is required under CI');
const TLS_PORTS = { httpsPort: 0, stompTlsPort: 0, mqttTlsPort: 0 };
const CHROMIUM = process.env['HERALD_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
const BUILT = fileURLToPath(new URL('../../dist/web/console/index.html', import.meta.url));

function browserMissing(): string | false {
  const missing = skip || (!existsSync(CHROMIUM) ? `Chromium at ${CHROMIUM}` : !existsSync(BUILT) ? 'the built console (npm run build)' : !existsSync('/usr/bin/certutil') ? 'certutil (apt-get install -y libnss3-tools)' : undefined);
  if (!missing) return false;
  if (process.env['CI']) throw new Error(`CI=true but the HTTPS console test needs ${missing}`);
  return `needs ${missing}`;
}

function port(s: TestServer, name: string): number {
  return s.server.address(name).port;
}

/** A raw STOMP CONNECT over TLS with these files; resolves with the first frame the server sends. */
function stompOverTls(s: TestServer, ca: Buffer, files: { cert: Buffer; key: Buffer } | undefined, headers: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: port(s, 'stomp-tls'), ca, servername: 'localhost', ...(files ?? {}) }, () => {
      socket.write(`CONNECT\naccept-version:1.2\nhost:localhost\n${headers}\n\0`);
    });
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('\0')) {
        socket.end();
        resolve(got.slice(0, got.indexOf('\0')));
      }
    });
    socket.once('error', reject);
    socket.once('close', () => resolve(got));
  });
}

describe('client certificates name users (tlsClientCertAsUser)', { skip }, () => {
  let pki: TestPki;
  let s: TestServer;
  let ca: Buffer;
  let admin: string;
  const files = (f: { cert: string; key: string }): { cert: Buffer; key: Buffer } => ({ cert: pki.read(f.cert), key: pki.read(f.key) });

  before(async () => {
    pki = makePki();
    ca = pki.read(pki.ca);
    s = await startServer({ ...TLS_PORTS, tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey, tlsCaFile: pki.ca, tlsClientCertAsUser: true });
    admin = await login(s.url);
    for (const name of ['device-7', 'sleeper']) {
      const r = await api<{ id: string }>(s.url, 'POST', '/api/users', { token: admin, body: { name, password: `${name}-password-1`, role: 'user' } });
      assert.equal(r.status, 200, r.body.message);
    }
    const users = await api<{ id: string; name: string }[]>(s.url, 'GET', '/api/users', { token: admin });
    const sleeper = users.body.data.find((u) => u.name === 'sleeper')!;
    const r = await api(s.url, 'PATCH', `/api/users/${sleeper.id}`, { token: admin, body: { disabled: true } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });
  after(async () => {
    await s?.stop();
    pki?.destroy();
  });

  async function clientNames(): Promise<{ loginName: string; protocol: string }[]> {
    return (await api<{ loginName: string; protocol: string }[]>(s.url, 'GET', '/api/message/getWebSocketClients', { token: admin })).body.data;
  }

  it('MQTT: the CN is the user, whatever user name and password the CONNECT carries; without a certificate, a password login as usual', async () => {
    const url = `mqtts://localhost:${port(s, 'mqtt-tls')}`;
    const device = await mqtt.connectAsync(url, { ca, ...files({ cert: pki.clientCert, key: pki.clientKey }), clientId: 'cert-device', username: 'admin', password: 'not-the-password', reconnectPeriod: 0 });
    try {
      const seen = await clientNames();
      assert.ok(seen.some((c) => c.loginName === 'device-7' && c.protocol.startsWith('mqtt')), JSON.stringify(seen));
      assert.ok(!seen.some((c) => c.loginName === 'admin'), 'the user name in CONNECT did not log in');
      await device.subscribeAsync('cert/echo', { qos: 1 });
      const got = new Promise<string>((resolve) => device.once('message', (_t, p) => resolve(p.toString())));
      await device.publishAsync('cert/echo', 'as device-7', { qos: 1 });
      assert.equal(await got, 'as device-7');
    } finally {
      await device.endAsync();
    }
    const plain = await mqtt.connectAsync(url, { ca, username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 });
    await plain.endAsync();
    await assert.rejects(mqtt.connectAsync(url, { ca, username: 'admin', password: 'wrong', reconnectPeriod: 0 }), /Bad username or password/);
  });

  it('MQTT 3.1.1 and 5: a certificate naming no user, a disabled user, or without a CN is refused with the CONNACK code', async () => {
    const url = `mqtts://localhost:${port(s, 'mqtt-tls')}`;
    const ghost = files(pki.issueClient('/CN=ghost'));
    await assert.rejects(mqtt.connectAsync(url, { ca, ...ghost, reconnectPeriod: 0 }), /Bad username or password/);
    await assert.rejects(mqtt.connectAsync(url, { ca, ...ghost, protocolVersion: 5, reconnectPeriod: 0 }), (err: Error & { code?: number }) => err.code === 0x86);
    const sleeper = files(pki.issueClient('/CN=sleeper'));
    await assert.rejects(mqtt.connectAsync(url, { ca, ...sleeper, reconnectPeriod: 0 }), /Not authorized/);
    await assert.rejects(mqtt.connectAsync(url, { ca, ...sleeper, protocolVersion: 5, reconnectPeriod: 0 }), (err: Error & { code?: number }) => err.code === 0x87);
    const nameless = files(pki.issueClient('/O=Herald Devices'));
    await assert.rejects(mqtt.connectAsync(url, { ca, ...nameless, reconnectPeriod: 0 }), /Bad username or password/);
  });

  it('STOMP: CONNECTED names the CN as user-name without login or passcode; refusals are ERROR frames that say why', async () => {
    const connected = await stompOverTls(s, ca, files({ cert: pki.clientCert, key: pki.clientKey }), '');
    assert.match(connected, /^CONNECTED\n/);
    assert.match(connected, /\nuser-name:device-7\n/);
    const ghost = await stompOverTls(s, ca, files(pki.issueClient('/CN=ghost')), 'login:admin\npasscode:' + ADMIN_PASSWORD + '\n');
    assert.match(ghost, /^ERROR\n/);
    assert.match(ghost, /user "ghost", who does not exist/);
    const sleeper = await stompOverTls(s, ca, files(pki.issueClient('/CN=sleeper')), '');
    assert.match(sleeper, /^ERROR\n/);
    assert.match(sleeper, /user "sleeper" is disabled/);
    const nameless = await stompOverTls(s, ca, files(pki.issueClient('/O=Herald Devices')), '');
    assert.match(nameless, /has no CN/);
    const plain = await stompOverTls(s, ca, undefined, 'login:admin\npasscode:' + ADMIN_PASSWORD + '\n');
    assert.match(plain, /^CONNECTED\n/);
    assert.match(plain, /\nuser-name:admin\n/);
  });

  it('a certificate signed by another CA names nobody: without credentials refused, with them the login is theirs', async () => {
    const forged = files(pki.issueClient('/CN=device-7', 'other-ca'));
    const bare = await stompOverTls(s, ca, forged, '');
    assert.match(bare, /^ERROR\n/);
    assert.match(bare, /no credentials/);
    const withPassword = await stompOverTls(s, ca, forged, 'login:admin\npasscode:' + ADMIN_PASSWORD + '\n');
    assert.match(withPassword, /\nuser-name:admin\n/, 'not device-7');
    const url = `mqtts://localhost:${port(s, 'mqtt-tls')}`;
    await assert.rejects(mqtt.connectAsync(url, { ca, ...forged, reconnectPeriod: 0 }), /Not authorized/);
  });

  it('refuses tlsClientCertAsUser without a CA to verify certificates with, at start', async () => {
    await assert.rejects(startServer({ ...TLS_PORTS, tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey, tlsClientCertAsUser: true }), /tlsClientCertAsUser needs tlsCaFile/);
    await assert.rejects(startServer({ tlsClientCertAsUser: true }), /tlsClientCertAsUser needs tlsCertFile/);
  });
});

describe('the console over HTTPS in Chromium, with the test CA in its certificate store', { skip: browserMissing() }, () => {
  let pki: TestPki;
  let s: TestServer;
  let home: string;

  before(async () => {
    pki = makePki();
    s = await startServer({ ...TLS_PORTS, tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey });
    // Chromium on Linux trusts what the user's NSS database trusts: a fresh one in a throw-away HOME.
    home = mkdtempSync(join(tmpdir(), 'herald-chromium-home-'));
    const db = join(home, '.pki', 'nssdb');
    mkdirSync(db, { recursive: true });
    execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password']);
    execFileSync('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'Herald Test CA', '-i', pki.ca]);
  });
  after(async () => {
    await s?.stop();
    pki?.destroy();
    rmSync(home, { recursive: true, force: true });
  });

  async function openConsole(trusted: boolean): Promise<{ title: string; error?: string; loggedIn?: boolean }> {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
      env: { ...process.env, HOME: trusted ? home : mkdtempSync(join(tmpdir(), 'herald-chromium-untrusted-')) },
    });
    try {
      const page = await browser.newPage();
      page.setDefaultTimeout(10_000);
      try {
        await page.goto(`https://localhost:${port(s, 'https')}/console/`);
      } catch (err) {
        return { title: '', error: (err as Error).message };
      }
      await page.getByLabel('User name').fill('admin');
      await page.getByLabel('Password').fill(ADMIN_PASSWORD);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.getByRole('heading', { name: 'Overview' }).waitFor();
      const secure = await page.evaluate(() => window.isSecureContext && location.protocol);
      return { title: String(secure), loggedIn: true };
    } finally {
      await browser.close();
    }
  }

  it('logs in to the console at https://localhost with the CA trusted, and is refused with an unknown CA', async () => {
    const ok = await openConsole(true);
    assert.equal(ok.error, undefined);
    assert.equal(ok.title, 'https:', 'a secure context over https');
    assert.equal(ok.loggedIn, true);
    const refused = await openConsole(false);
    assert.match(refused.error ?? '', /ERR_CERT_AUTHORITY_INVALID/);
  });
});
