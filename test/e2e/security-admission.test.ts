/**
 * Attacks on what a connection may do before it authenticates, on every
 * listener at once: one gate (src/transports/admission.ts) bounds the time
 * and bytes before CONNECT and the unauthenticated connections per address,
 * and WebSocket messages per second are capped for every path.
 */
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { addressKey } from '../../src/transports/admission.js';
import { JsonClient } from '../helpers/json-ws.js';
import { RawMqtt } from '../helpers/mqtt.js';
import { login, startServer, type TestServer } from '../helpers/server.js';
import { frameHeader, RawStomp, wsUrl } from '../helpers/stomp.js';

function rawTcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves with how long the socket stayed open after `since`, or rejects if it is still open after `limitMs`. */
function closedWithin(s: Socket, since: number, limitMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve(Date.now() - since);
    const t = setTimeout(() => reject(new Error(`still open after ${limitMs} ms`)), limitMs);
    s.once('close', () => {
      clearTimeout(t);
      resolve(Date.now() - since);
    });
  });
}

describe('before authentication: time, bytes and connections per address are bounded on every listener', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ connectTimeoutSeconds: 1, maxPreAuthBytes: 2048, maxUnauthenticatedPerAddress: 6 });
  });
  after(() => srv.stop());

  it('STOMP over TCP: no CONNECT within connectTimeoutSeconds gets an ERROR saying so, then the close', async () => {
    const c = await RawStomp.tcp(srv.server.address('stomp').port);
    const t0 = Date.now();
    const err = await c.next('ERROR', 4000);
    assert.match(frameHeader(err, 'message') ?? '', /not connected/);
    assert.match(err.body.toString(), /not authenticated within 1 s.*connectTimeoutSeconds/);
    await c.closedPromise;
    assert.ok(Date.now() - t0 < 3500);
  });

  it('STOMP over WebSocket: more than maxPreAuthBytes before CONNECT gets an ERROR naming the limit', async () => {
    const c = await RawStomp.ws(wsUrl(srv.url, '/stomp'));
    // A header block that never ends, sent in small WebSocket messages (each under the header limit).
    c.send('CONNECT\naccept-version:1.2\n');
    for (let i = 0; i < 40; i++) c.send(`x-pad-${i}:${'a'.repeat(90)}\n`);
    const err = await c.next('ERROR', 4000);
    assert.match(err.body.toString(), /before authentication.*maxPreAuthBytes/);
    await c.closedPromise;
  });

  it('MQTT over TCP: a CONNECT larger than maxPreAuthBytes is cut before it is parsed', async () => {
    const m = await RawMqtt.open(srv.server.address('mqtt').port, 4);
    m.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: 'big-will',
      clean: true,
      keepalive: 60,
      username: 'admin',
      password: Buffer.from('x'),
      will: { topic: 'w', payload: Buffer.alloc(8000, 1), qos: 0, retain: false },
    });
    await m.closed;
    assert.equal(m.packets.length, 0, 'no CONNACK for a CONNECT that was cut');
  });

  it('MQTT over TCP: a connection that never sends CONNECT is closed after connectTimeoutSeconds', async () => {
    const s = await rawTcp(srv.server.address('mqtt').port);
    const took = await closedWithin(s, Date.now(), 4000);
    assert.ok(took >= 900, `closed after ${took} ms, before the timeout`);
  });

  it('an address holding maxUnauthenticatedPerAddress open connections is refused more, on TCP and HTTP, until they authenticate', async () => {
    const port = srv.server.address('stomp').port;
    const idle: Socket[] = [];
    for (let i = 0; i < 6; i++) idle.push(await rawTcp(port));
    // The seventh, on any listener of this address, is refused at once.
    const seventh = await rawTcp(port);
    await closedWithin(seventh, Date.now(), 1000);
    const mqtt = await rawTcp(srv.server.address('mqtt').port);
    await closedWithin(mqtt, Date.now(), 1000);
    const http = await rawTcp(srv.server.address('http').port);
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      http.on('data', (d: Buffer) => (text += d.toString()));
      http.on('close', () => resolve(text));
      http.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    assert.match(answer, /^HTTP\/1.1 429/);
    assert.match(answer, /unauthenticated connections/);
    // Once they authenticate they no longer count: new connections are admitted again.
    const token = await loginWhenFree(srv, idle);
    for (const s of idle) {
      s.write(`CONNECT\naccept-version:1.2\npasscode:${token}\nlogin:admin\n\n\0`);
    }
    await new Promise((r) => setTimeout(r, 300));
    const fresh = await RawStomp.tcp(port);
    const connected = await fresh.connect({ login: 'admin', passcode: token });
    assert.equal(connected.command, 'CONNECTED');
    fresh.close();
    for (const s of idle) s.destroy();
  });
});

/** The address is full, so log in once one idle connection made room; returns the token. */
async function loginWhenFree(srv: TestServer, idle: Socket[]): Promise<string> {
  idle.pop()!.destroy();
  await new Promise((r) => setTimeout(r, 100));
  return login(srv.url);
}

describe('unauthenticated connections are capped for the whole server too, and IPv6 hosts by their /64', () => {
  it('counts an IPv6 address by its /64 prefix, IPv4 (also mapped) as it is', () => {
    assert.equal(addressKey('127.0.0.2'), '127.0.0.2');
    assert.equal(addressKey('::ffff:10.0.0.1'), '::ffff:10.0.0.1');
    assert.equal(addressKey('2001:db8:0:1::5'), '2001:db8:0:1::/64');
    assert.equal(addressKey('2001:0DB8:0000:0001:ffff::9'), '2001:db8:0:1::/64');
    assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
    assert.equal(addressKey('fe80:1:2:3:4:5:6:7'), 'fe80:1:2:3::/64');
  });

  it('past maxUnauthenticatedConnections every listener refuses, whatever the address', async () => {
    const srv = await startServer({ maxUnauthenticatedConnections: 4 });
    try {
      const idle: Socket[] = [];
      for (let i = 0; i < 4; i++) idle.push(await rawTcp(srv.server.address('mqtt').port));
      const refused = await rawTcp(srv.server.address('stomp').port);
      await closedWithin(refused, Date.now(), 1000);
      idle.pop()!.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const admitted = await RawStomp.tcp(srv.server.address('stomp').port);
      const token = await loginWhenFree(srv, idle);
      assert.equal((await admitted.connect({ login: token })).command, 'CONNECTED');
      admitted.close();
      for (const s of idle) s.destroy();
    } finally {
      await srv.stop();
    }
  });
});

describe('WebSocket messages per second are capped per connection', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ wsMessagesPerSecond: 100 });
  });
  after(() => srv.stop());

  it('a client sending 300 messages at once is read at 100 per second, and every one is still handled', async () => {
    const token = await login(srv.url);
    const c = await JsonClient.open(wsUrl(srv.url, `/websocket/${token}`));
    const t0 = Date.now();
    for (let i = 0; i < 300; i++) c.send({ action: 'ping' });
    for (let i = 0; i < 300; i++) await c.next('pong', 5000);
    const took = Date.now() - t0;
    assert.ok(took >= 1800, `300 messages were read in ${took} ms; the cap of 100/s allows no faster than ~2 s`);
    // Meanwhile another connection is not slowed.
    const other = await JsonClient.open(wsUrl(srv.url, `/websocket/${token}`));
    const t1 = Date.now();
    await other.sync();
    assert.ok(Date.now() - t1 < 500);
    c.close();
    other.close();
  });
});
