/**
 * Hot reload on a real `herald serve` process: a real SIGHUP and
 * POST /api/admin/reload read `aclFile` (and the TLS files) again. Connected
 * clients meet the new rules at their next publish and subscribe and stay
 * connected; a file that does not load keeps the current rules and says why,
 * in the log and in the API's answer.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { runHerald, LOOPBACK_PORT_FLAGS, type HeraldProcess } from '../helpers/process.js';
import { ADMIN_PASSWORD, api, login, tempDir } from '../helpers/server.js';
import { JsonClient } from '../helpers/json-ws.js';
import { suback } from '../helpers/mqtt.js';
import { makePki, opensslMissing, type TestPki } from '../helpers/tls-certs.js';

const noOpenssl = opensslMissing();

interface Report {
  ok: boolean;
  acl: { configured: boolean; ok: boolean; file?: string; rules?: number; reason?: string };
  tls: { configured: boolean; ok: boolean; certFile?: string; reason?: string };
  jwks: { configured: boolean; ok: boolean };
}

const RULES_ROOM = [
  { effect: 'allow', action: 'all', topic: '#', who: 'role:admin' },
  { effect: 'allow', action: 'all', topic: 'room/#', who: 'user' },
];
const RULES_LOBBY = [
  { effect: 'allow', action: 'all', topic: '#', who: 'role:admin' },
  { effect: 'allow', action: 'all', topic: 'lobby/#', who: 'user' },
];

/** A log line (JSON, on stdout) matching `re`, written after the first `from` lines. */
async function logLine(p: HeraldProcess, from: number, re: RegExp, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = p.stdout.slice(from).find((l) => re.test(l));
    if (line) return JSON.parse(line) as Record<string, unknown>;
    if (Date.now() > deadline) throw new Error(`no log line matching ${re}; stdout since: ${p.stdout.slice(from).join('\n')}\nstderr: ${p.stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The serial number of the certificate a TLS listener presents. */
function serialAt(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const serial = socket.getPeerCertificate().serialNumber.toUpperCase();
      socket.end();
      resolve(serial);
    });
    socket.once('error', reject);
  });
}

describe('hot reload: SIGHUP and POST /api/admin/reload', () => {
  const dir = tempDir('herald-reload-');
  const aclFile = join(dir, 'acl.json');
  const certFile = join(dir, 'server.pem');
  const keyFile = join(dir, 'server.key');
  let pki: TestPki | undefined;
  let p: HeraldProcess;
  let base: string;
  let mqttUrl: string;
  let tlsPort = 0;
  let admin: string;
  let alice: string;
  const clients: { end(): unknown }[] = [];

  const sighup = async (expect: RegExp): Promise<Record<string, unknown>> => {
    const from = p.stdout.length;
    p.child.kill('SIGHUP');
    return logLine(p, from, expect);
  };
  const reload = (token?: string) => api<Report>(base, 'POST', '/api/admin/reload', token ? { token } : {});
  const aliceMqtt = async (): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(mqttUrl, { username: 'alice', password: 'alice-password', protocolVersion: 5, reconnectPeriod: 0 });
    clients.push({ end: () => c.end(true) });
    return c;
  };

  before(async () => {
    writeFileSync(aclFile, JSON.stringify(RULES_ROOM));
    const tlsFlags: string[] = [];
    if (!noOpenssl) {
      pki = makePki();
      pki.reissueServer(certFile, keyFile);
      tlsFlags.push('--tls-cert-file', certFile, '--tls-key-file', keyFile, '--mqtt-tls-port', '0', '--https-port', 'off', '--stomp-tls-port', 'off');
    }
    p = runHerald(['serve', ...LOOPBACK_PORT_FLAGS, '--data-dir', join(dir, 'data'), '--acl-file', aclFile, ...tlsFlags], {
      HERALD_ADMIN_PASSWORD: ADMIN_PASSWORD,
      HERALD_LOG_LEVEL: 'info',
    });
    const [, host, port] = (await p.waitFor(/^listening http (\S+):(\d+)$/))!;
    base = `http://${host}:${port}`;
    const [, , mqttPort] = (await p.waitFor(/^listening mqtt (\S+):(\d+)$/))!;
    mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
    if (pki) tlsPort = Number((await p.waitFor(/^listening mqtt-tls (\S+):(\d+)$/))![2]);
    admin = await login(base);
    assert.equal((await api(base, 'POST', '/api/users', { token: admin, body: { name: 'alice', password: 'alice-password', role: 'user' } })).status, 200);
    alice = await login(base, 'alice', 'alice-password');
  });

  after(async () => {
    for (const c of clients) c.end();
    p.child.kill('SIGTERM');
    await p.exited;
    pki?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies new rules to the next publish and subscribe of connected clients, which stay connected; their subscriptions stay', async () => {
    const m = await aliceMqtt();
    assert.deepEqual(await suback(m, { 'room/a': { qos: 1 } }), [1]);
    const echo = new Promise<string>((resolve) => m.once('message', (_t, payload) => resolve(payload.toString())));
    await m.publishAsync('room/a', 'before', { qos: 1 });
    assert.equal(await echo, 'before');
    // room/b is decided (allowed) and cached for this connection before the reload.
    await m.publishAsync('room/b', 'before', { qos: 1 });
    const json = await JsonClient.open(base.replace(/^http/, 'ws') + '/websocket/' + alice);
    clients.push({ end: () => json.close() });
    json.send({ action: 'publish', topic: 'room.c', data: 'before' });
    await json.sync();
    assert.equal(json.events.filter((e) => e.event === 'error').length, 0);

    writeFileSync(aclFile, JSON.stringify(RULES_LOBBY));
    const done = await sighup(/"msg":"reload done"/);
    assert.deepEqual((done['reload'] as Report).acl, { configured: true, ok: true, file: aclFile, rules: 2 });

    await assert.rejects(m.publishAsync('room/b', 'after', { qos: 1 }), /Not authorized/, 'the cached decision was dropped');
    assert.deepEqual(await suback(m, { 'room/x': { qos: 1 } }), [0x87]);
    await m.publishAsync('lobby/1', 'after', { qos: 1 });
    assert.equal(m.connected, true, 'the MQTT connection stays');
    json.send({ action: 'publish', topic: 'room.c', data: 'after' });
    assert.equal(((await json.next('error')).data as { code: string }).code, 'not_allowed');
    json.send({ action: 'publish', topic: 'lobby.c', data: 'after' });
    await json.sync();
    assert.equal(json.events.filter((e) => e.event === 'error').length, 0, 'the JSON WebSocket stays and lobby is allowed');

    // The subscription made under the old rules stays (as in mosquitto): docs/security.md says so.
    const kept = new Promise<string>((resolve) => m.once('message', (_t, payload) => resolve(payload.toString())));
    assert.equal((await api(base, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/room.a', body: 'still subscribed' } })).status, 200);
    assert.equal(await kept, 'still subscribed');
  });

  it('keeps the current rules when the new file does not load, and says why in the log and in the answer', async () => {
    writeFileSync(aclFile, '[{"effect": "allow",');
    const from = p.stdout.length;
    const warn = await sighup(/aclFile not reloaded/);
    assert.equal(warn['level'], 40, 'logged at warn');
    assert.match(String(warn['reason']), /cannot be read as JSON/);
    const summary = await logLine(p, from, /"msg":"reload incomplete/);
    assert.equal(summary['level'], 40);
    assert.match(String(summary['msg']), /aclFile: aclFile .* cannot be read as JSON.*\(the 2 current rules stay\)/);

    const m = await aliceMqtt();
    await assert.rejects(m.publishAsync('room/b', 'x', { qos: 1 }), /Not authorized/, 'the rules of before are still in force');
    await m.publishAsync('lobby/2', 'x', { qos: 1 });

    const bad = await reload(admin);
    assert.equal(bad.status, 422);
    assert.equal(bad.body.code, 422);
    assert.match(bad.body.message, /^not everything was reloaded: aclFile: aclFile .*acl\.json cannot be read as JSON/);
    assert.equal(bad.body.data.ok, false);
    assert.equal(bad.body.data.acl.ok, false);
    assert.equal(bad.body.data.acl.rules, 2);
    assert.match(bad.body.data.acl.reason!, /cannot be read as JSON/);
    assert.equal(bad.body.data.jwks.configured, false);

    writeFileSync(aclFile, JSON.stringify([{ effect: 'maybe', action: 'all', topic: '#' }]));
    const badRule = await reload(admin);
    assert.equal(badRule.status, 422);
    assert.match(badRule.body.data.acl.reason!, /rule 1: effect must be "allow" or "deny"/);
    writeFileSync(aclFile, JSON.stringify([{ effect: 'allow', action: 'all', topic: 'a/#/b' }]));
    assert.match((await reload(admin)).body.data.acl.reason!, /rule 1: topic must be an MQTT topic filter/);
    await assert.rejects(m.publishAsync('room/b', 'x', { qos: 1 }), /Not authorized/, 'still the rules of before');

    writeFileSync(aclFile, JSON.stringify(RULES_ROOM));
    const good = await reload(admin);
    assert.equal(good.status, 200, good.body.message);
    assert.deepEqual(good.body.data.acl, { configured: true, ok: true, file: aclFile, rules: 2 });
    assert.equal(good.body.data.ok, true);
    await m.publishAsync('room/b', 'allowed again', { qos: 1 });
    assert.equal(m.connected, true);
  });

  it('answers POST /api/admin/reload for admins only: 401 without a token, 403 for a user', async () => {
    const anonymous = await reload();
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.body.message, /authentication required/);
    const user = await reload(alice);
    assert.equal(user.status, 403);
    assert.match(user.body.message, /this needs the admin role; you are "alice" \(user\)/);
    assert.equal(user.body.data, null, 'no report for a user');
  });

  it('reads the TLS files again on SIGHUP; a key that does not load keeps the current certificate', { skip: noOpenssl }, async () => {
    const before = await serialAt(tlsPort, pki!.read(pki!.ca));
    const serial = pki!.reissueServer(certFile, keyFile).toUpperCase();
    assert.notEqual(serial, before);
    const done = await sighup(/"msg":"reload done"/);
    assert.deepEqual((done['reload'] as Report).tls, { configured: true, ok: true, certFile });
    assert.equal(await serialAt(tlsPort, pki!.read(pki!.ca)), serial);

    writeFileSync(keyFile, 'not a key');
    const bad = await reload(admin);
    assert.equal(bad.status, 422);
    assert.equal(bad.body.data.acl.ok, true, 'the parts reload on their own');
    assert.equal(bad.body.data.tls.ok, false);
    assert.match(bad.body.data.tls.reason!, /do not make a usable certificate/);
    assert.match(bad.body.message, /TLS: .*\(the current certificate stays\)/);
    assert.equal(await serialAt(tlsPort, pki!.read(pki!.ca)), serial, 'the current certificate stays');
  });
});
