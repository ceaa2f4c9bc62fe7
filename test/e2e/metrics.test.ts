/**
 * /metrics as Prometheus scrapes it, against a real server: the standard
 * process_* and nodejs_* names, herald_build_info, series present at 0
 * before anything happened, and each kind of refusal in its own counter
 * (a failed login, an ACL denial, a slow consumer cut), counted once; HTTP
 * requests by route pattern, never by URL.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { JsonClient, jsonUrl } from '../helpers/json-ws.js';
import { tcpUrl } from '../helpers/mqtt.js';
import { ADMIN_PASSWORD, api, login, startServer, tempDir, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader } from '../helpers/stomp.js';

const PROTOCOLS = ['stomp-ws', 'stomp-tcp', 'json-ws', 'mqtt-tcp', 'mqtt-ws'];

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  samples: Sample[];
  /** `# TYPE` of each metric family. */
  types: Map<string, string>;
}

/** The text exposition format, as far as prom-client writes it: `# HELP`/`# TYPE` lines and `name{k="v",…} value`. */
function parseExposition(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/y;
    while (pair.lastIndex < body.length) {
      const p = pair.exec(body);
      assert.ok(p, `bad labels in: ${line}`);
      labels[p[1]!] = p[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    // Go's ParseFloat, as Prometheus reads values: NaN and Inf in any case (prom-client writes `Nan`).
    const value = /^[+-]?inf$/i.test(m[3]!) ? (m[3]!.startsWith('-') ? -Infinity : Infinity) : Number(m[3]);
    assert.ok(!Number.isNaN(value) || /^nan$/i.test(m[3]!), `bad value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

async function scrape(s: TestServer): Promise<Scrape> {
  const res = await fetch(s.url + '/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return parseExposition(await res.text());
}

/** The samples of `name` whose labels include `labels`. */
function find(x: Scrape, name: string, labels: Record<string, string> = {}): Sample[] {
  return x.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one sample of `name` with exactly these labels; fails when there is none. */
function value(x: Scrape, name: string, labels: Record<string, string> = {}): number {
  const hits = find(x, name, labels).filter((s) => Object.keys(s.labels).length === Object.keys(labels).length);
  assert.equal(hits.length, 1, `${name}${JSON.stringify(labels)}: ${hits.length} series; ${name} has ${JSON.stringify(find(x, name).map((s) => s.labels))}`);
  return hits[0]!.value;
}

/** How much each of `series` grew while `action` ran, read from two scrapes. */
async function growth(s: TestServer, series: [string, Record<string, string>][], action: () => Promise<void>): Promise<number[]> {
  const before = await scrape(s);
  await action();
  const afterwards = await scrape(s);
  return series.map(([name, labels]) => value(afterwards, name, labels) - value(before, name, labels));
}

async function until(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('/metrics', () => {
  let s: TestServer;
  let admin: string;
  let bob: string;
  /** A service user: may publish over HTTP, within the access rules. */
  let svc: string;
  before(async () => {
    const dir = tempDir();
    const aclFile = join(dir, 'acl.json');
    writeFileSync(
      aclFile,
      JSON.stringify([
        { effect: 'allow', action: 'all', topic: 'public/#', who: 'user' },
        { effect: 'allow', action: 'all', topic: '#', who: 'role:admin' },
      ]),
    );
    // A small byte budget, so a subscriber that never acknowledges is cut after a few messages.
    s = await startServer({ aclFile, maxHeldBytesPerConnection: 65_536, publishRatePerSecond: 0 }, undefined, dir);
    admin = await login(s.url);
    assert.equal((await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'bob', password: 'bob-password' } })).status, 200);
    bob = await login(s.url, 'bob', 'bob-password');
    assert.equal((await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'svc', password: 'svc-password', role: 'service' } })).status, 200);
    svc = await login(s.url, 'svc', 'svc-password');
  });
  after(() => s.stop());

  it('names the process and Node.js metrics as Prometheus does, says what runs, and shows every protocol at 0 before any connection', async () => {
    const x = await scrape(s);
    assert.ok(value(x, 'process_cpu_seconds_total') >= 0);
    assert.ok(value(x, 'nodejs_heap_size_total_bytes') > 0);
    assert.equal(x.types.get('process_cpu_seconds_total'), 'counter');
    assert.deepEqual(x.samples.filter((m) => /^herald_(process|nodejs)_/.test(m.name)).map((m) => m.name), [], 'no prefixed standard metric');

    const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    assert.equal(value(x, 'herald_build_info', { version, node_version: process.version, store: 'sqlite', mode: 'single' }), 1);
    assert.equal(find(x, 'herald_build_info').length, 1);
    assert.equal(x.types.get('herald_build_info'), 'gauge');

    for (const protocol of PROTOCOLS) {
      assert.equal(value(x, 'herald_connections', { protocol }), 0, protocol);
      assert.equal(value(x, 'herald_slow_consumer_disconnects_total', { protocol }), 0, protocol);
      assert.equal(value(x, 'herald_messages_out_total', { protocol }), 0, protocol);
      assert.equal(value(x, 'herald_auth_failures_total', { protocol, reason: 'bad_credentials' }), 0, protocol);
      assert.equal(value(x, 'herald_acl_denials_total', { protocol, action: 'subscribe' }), 0, protocol);
      assert.equal(value(x, 'herald_acl_denials_total', { protocol, action: 'publish' }), 0, protocol);
    }
    assert.equal(value(x, 'herald_acl_denials_total', { protocol: 'http', action: 'publish' }), 0);
    assert.equal(find(x, 'herald_acl_denials_total', { protocol: 'http', action: 'subscribe' }).length, 0, 'HTTP cannot subscribe');
    for (const [name, type] of [
      ['herald_connections', 'gauge'],
      ['herald_auth_failures_total', 'counter'],
      ['herald_acl_denials_total', 'counter'],
      ['herald_slow_consumer_disconnects_total', 'counter'],
      ['herald_protocol_errors_total', 'counter'],
      ['herald_http_request_duration_seconds', 'histogram'],
    ]) {
      assert.equal(x.types.get(name!), type, name);
    }
    assert.equal(x.types.get('herald_http_requests_total'), undefined, 'replaced by the histogram');
  });

  it('counts an open connection in herald_connections and forgets it when it closes', async () => {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await c.connect({ login: 'admin', passcode: ADMIN_PASSWORD })).command, 'CONNECTED');
    assert.equal(value(await scrape(s), 'herald_connections', { protocol: 'stomp-tcp' }), 1);
    c.close();
    await until(async () => value(await scrape(s), 'herald_connections', { protocol: 'stomp-tcp' }) === 0, 'the connection to be gone');
  });

  it('counts refused logins in herald_auth_failures_total by protocol and reason, and not as protocol errors', async () => {
    const stomp = s.server.address('stomp').port;
    const counted = await growth(
      s,
      [
        ['herald_auth_failures_total', { protocol: 'stomp-tcp', reason: 'bad_credentials' }],
        ['herald_auth_failures_total', { protocol: 'stomp-tcp', reason: 'no_credentials' }],
        ['herald_auth_failures_total', { protocol: 'mqtt-tcp', reason: 'bad_credentials' }],
        ['herald_auth_failures_total', { protocol: 'http', reason: 'bad_credentials' }],
        ['herald_auth_failures_total', { protocol: 'http', reason: 'invalid_token' }],
        ['herald_auth_failures_total', { protocol: 'http', reason: 'no_credentials' }],
        ['herald_auth_failures_total', { protocol: 'json-ws', reason: 'invalid_token' }],
      ],
      async () => {
        const wrong = await RawStomp.tcp(stomp);
        const err = await wrong.connect({ login: 'nobody-stomp', passcode: 'wrong-password' });
        assert.equal(err.command, 'ERROR');
        assert.equal(frameHeader(err, 'message'), 'authentication failed');
        await wrong.closedPromise;
        const none = await RawStomp.tcp(stomp);
        assert.equal((await none.connect({})).command, 'ERROR');
        await none.closedPromise;
        await assert.rejects(
          mqtt.connectAsync(tcpUrl(s), { username: 'nobody-mqtt', password: 'wrong-password', reconnectPeriod: 0 }),
          (err: Error & { code?: number }) => err.code === 4,
        );
        assert.equal((await api(s.url, 'POST', '/v1/login', { body: { username: 'nobody-http', password: 'wrong-password' } })).status, 401);
        assert.equal((await api(s.url, 'GET', '/api/users', { token: 'not-a-token-at-all' })).status, 401);
        assert.equal((await api(s.url, 'GET', '/api/users')).status, 401);
        await assert.rejects(JsonClient.open(jsonUrl(s, 'not-a-token-either')));
      },
    );
    assert.deepEqual(counted, [1, 1, 1, 1, 1, 1, 1]);
    const x = await scrape(s);
    assert.equal(value(x, 'herald_auth_failures_total', { protocol: 'mqtt-tcp', reason: 'no_credentials' }), 0);
    // A refused login is no protocol error: the CONNACK refusal is counted once, as an auth failure.
    assert.equal(find(x, 'herald_protocol_errors_total', { reason: 'connect_refused' }).length, 0);
    assert.equal(find(x, 'herald_protocol_errors_total', { reason: 'auth' }).length, 0);
  });

  it('counts refusals of the access rules in herald_acl_denials_total by protocol and action, each refusal once', async () => {
    const counted = await growth(
      s,
      [
        ['herald_acl_denials_total', { protocol: 'stomp-tcp', action: 'subscribe' }],
        ['herald_acl_denials_total', { protocol: 'mqtt-tcp', action: 'subscribe' }],
        ['herald_acl_denials_total', { protocol: 'mqtt-tcp', action: 'publish' }],
        ['herald_acl_denials_total', { protocol: 'http', action: 'publish' }],
        ['herald_acl_denials_total', { protocol: 'json-ws', action: 'publish' }],
      ],
      async () => {
        const c = await RawStomp.tcp(s.server.address('stomp').port);
        assert.equal((await c.connect({ passcode: bob })).command, 'CONNECTED');
        c.send('SUBSCRIBE\nid:1\ndestination:/topic/secret.plans\n\n\0');
        assert.match((await c.next('ERROR')).body.toString(), /do not let "bob" subscribe/);
        await c.closedPromise;

        const m = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password', protocolVersion: 5, reconnectPeriod: 0 });
        await assert.rejects(m.subscribeAsync('secret/#', { qos: 1 }));
        // The second refusal of the same topic is answered from the connection's cache, and counted all the same.
        await assert.rejects(m.publishAsync('secret/x', 'no', { qos: 1 }), /Not authorized/);
        await assert.rejects(m.publishAsync('secret/x', 'no', { qos: 1 }), /Not authorized/);
        await m.publishAsync('public/x', 'yes', { qos: 1 });
        await m.endAsync();

        assert.equal((await api(s.url, 'POST', '/api/publish', { token: svc, body: { destination: '/topic/secret.x', body: 'no' } })).status, 403);
        assert.equal((await api(s.url, 'POST', '/api/publish', { token: svc, body: { destination: '/topic/public.x', body: 'yes' } })).status, 200);

        const j = await JsonClient.open(jsonUrl(s, bob));
        j.send({ action: 'publish', topic: 'secret.y', data: 'no' });
        assert.equal(((await j.next('error')).data as { code: string }).code, 'not_allowed');
        j.close();
      },
    );
    assert.deepEqual(counted, [1, 1, 2, 1, 1]);
    // Nothing so far was malformed or over a limit: refused logins and refusals of the access rules are not protocol errors.
    assert.deepEqual(find(await scrape(s), 'herald_protocol_errors_total'), []);
  });

  it('counts a subscriber cut for not acknowledging in herald_slow_consumer_disconnects_total, once', async () => {
    const hog = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await hog.connect({ login: 'admin', passcode: ADMIN_PASSWORD })).command, 'CONNECTED');
    hog.send('SUBSCRIBE\nid:h\ndestination:/topic/firehose\nack:client-individual\nreceipt:sub\n\n\0');
    await hog.next('RECEIPT');
    const [cuts] = await growth(s, [['herald_slow_consumer_disconnects_total', { protocol: 'stomp-tcp' }]], async () => {
      // 16 KiB bodies, never acknowledged: past the 64 KiB budget after a few; more keep coming after the cut.
      const body = 'm'.repeat(16 * 1024);
      for (let i = 0; i < 12; i++) {
        assert.equal((await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/firehose', body } })).status, 200);
      }
      const err = await hog.next('ERROR');
      assert.equal(frameHeader(err, 'message'), 'slow consumer');
      await hog.closedPromise;
    });
    assert.equal(cuts, 1);
    const x = await scrape(s);
    for (const protocol of PROTOCOLS.filter((p) => p !== 'stomp-tcp')) assert.equal(value(x, 'herald_slow_consumer_disconnects_total', { protocol }), 0);
    assert.equal(find(x, 'herald_protocol_errors_total', { reason: 'slow_consumer' }).length, 0, 'no longer a protocol error');
  });

  it('times HTTP requests by route pattern, never by URL: two ids, one series; no route is "unmatched"', async () => {
    const before = await scrape(s);
    assert.equal(find(before, 'herald_http_request_duration_seconds_count', { route: '/api/users/:id' }).length, 0);
    for (const id of ['no-such-user-1', 'no-such-user-2']) {
      assert.equal((await api(s.url, 'PATCH', `/api/users/${id}`, { token: admin, body: { disabled: false } })).status, 404);
    }
    assert.equal((await api(s.url, 'GET', '/no/such/page-1')).status, 404);
    const x = await scrape(s);
    const labels = { method: 'PATCH', route: '/api/users/:id', status_code: '404' };
    assert.equal(value(x, 'herald_http_request_duration_seconds_count', labels), 2);
    assert.equal(value(x, 'herald_http_request_duration_seconds_bucket', { ...labels, le: '+Inf' }), 2);
    assert.ok(value(x, 'herald_http_request_duration_seconds_sum', labels) > 0);
    assert.equal(find(x, 'herald_http_request_duration_seconds_count', { route: '/api/users/:id' }).length, 1, 'one series for both ids');
    const unmatched = { method: 'GET', route: 'unmatched', status_code: '404' };
    assert.equal(value(x, 'herald_http_request_duration_seconds_count', unmatched) - (find(before, 'herald_http_request_duration_seconds_count', unmatched)[0]?.value ?? 0), 1);
    // The logins and publishes of the earlier tests, under their routes.
    assert.ok(value(x, 'herald_http_request_duration_seconds_count', { method: 'POST', route: '/v1/login', status_code: '200' }) >= 2);
    assert.ok(value(x, 'herald_http_request_duration_seconds_count', { method: 'POST', route: '/api/publish', status_code: '200' }) >= 12);
    const urls = x.samples.filter((m) => m.name.startsWith('herald_http_request_duration_seconds') && /no-such|page-1/.test(m.labels['route'] ?? ''));
    assert.deepEqual(urls, [], 'no raw URL as a label');
  });
});
