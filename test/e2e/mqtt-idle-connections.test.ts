/**
 * What an idle connection keeps cheap (issue 16): one shared keep-alive
 * sweep instead of a timer per connection, state made on first use, and one
 * credential watch for all the sessions of a login token. The behaviour
 * stays the spec's: a silent client is cut at 1.5 times its keep alive, an
 * idle connection works as any other once it is used, and every session of
 * a revoked token ends.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { ADMIN, nextMessage, RawMqtt, tcpUrl } from '../helpers/mqtt.js';
import { ADMIN_PASSWORD } from '../helpers/server.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('idle MQTT connections', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(() => s.stop());

  it('one sweep watches every connection: the silent ones are cut at 1.5 times their keep alive, the others stay', async () => {
    const port = s.server.address('mqtt').port;
    const silent1 = await RawMqtt.open(port, 4);
    const silent3 = await RawMqtt.open(port, 4);
    const pinging = await RawMqtt.open(port, 4);
    // Each timed from before its CONNECT, so the server's clock for its silence starts after ours.
    const started1 = Date.now();
    assert.equal((await silent1.connect('silent-1', 'admin', ADMIN_PASSWORD, { keepalive: 1 })).returnCode, 0);
    const started3 = Date.now();
    assert.equal((await silent3.connect('silent-3', 'admin', ADMIN_PASSWORD, { keepalive: 3 })).returnCode, 0);
    assert.equal((await pinging.connect('pinging', 'admin', ADMIN_PASSWORD, { keepalive: 1 })).returnCode, 0);
    const ticker = setInterval(() => pinging.send({ cmd: 'pingreq' }), 400);
    let pingerClosed = false;
    void pinging.closed.then(() => (pingerClosed = true));
    let silent3ClosedAt = 0;
    void silent3.closed.then(() => (silent3ClosedAt = Date.now()));
    try {
      await silent1.closed;
      const cut1 = Date.now() - started1;
      assert.ok(cut1 >= 1500, `the 1 s client was cut after ${cut1} ms, before 1.5 s`);
      assert.ok(cut1 < 6000, `the 1 s client was cut only after ${cut1} ms`);
      assert.equal(silent3ClosedAt, 0, 'the 3 s client is not cut with it');
      await silent3.closed;
      const cut3 = silent3ClosedAt - started3;
      assert.ok(cut3 >= 4500, `the 3 s client was cut after ${cut3} ms, before 4.5 s`);
      assert.equal(pingerClosed, false, 'a client that pings within its keep alive is never cut');
      assert.ok((await pinging.next('pingresp')).cmd === 'pingresp');
    } finally {
      clearInterval(ticker);
      pinging.sock.destroy();
    }
  });

  it('an idle connection made no state it did not use, and works as any other once used', async () => {
    const idle = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'idle-then-busy', protocolVersion: 5 });
    const session = [...s.server.ctx.sessions.all()].find((x) => x.device === 'idle-then-busy');
    assert.ok(session, 'registered');
    assert.deepEqual(session.stats(), { subscriptions: 0, unacked: 0 });
    const fresh = session.describe();
    assert.deepEqual(fresh.subscriptions, []);
    assert.deepEqual(fresh.inflight, { messages: 0, bytes: 0 });
    await sleep(300);
    // First use: a QoS 1 subscription, a message to it from another client, a QoS 2 publish of its own, topic aliases.
    await idle.subscribeAsync('lazy/#', { qos: 1 });
    const other = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const got = nextMessage(idle, 'lazy/a');
    await other.publishAsync('lazy/a', 'one', { qos: 1 });
    assert.equal((await got).payload.toString(), 'one');
    const echo = nextMessage(other, 'lazy/b');
    await other.subscribeAsync('lazy/b', { qos: 2 });
    await idle.publishAsync('lazy/b', 'two', { qos: 2, properties: { topicAlias: 3 } });
    assert.equal((await echo).payload.toString(), 'two');
    assert.equal(session.stats().subscriptions, 1);
    assert.deepEqual(session.describe().subscriptions.map((x) => x.destination), ['lazy/#']);
    await other.endAsync();
    await idle.endAsync();
  });

  it('all sessions of one login token are watched as one: after one of them leaves, logging out still ends the others, and the token is refused after', async () => {
    const token = await login(s.url);
    const opts = { username: 'whoever', password: token, reconnectPeriod: 0 };
    const a = await mqtt.connectAsync(tcpUrl(s), { ...opts, clientId: 'tok-a' });
    const b = await mqtt.connectAsync(tcpUrl(s), { ...opts, clientId: 'tok-b' });
    const c = await mqtt.connectAsync(tcpUrl(s), { ...opts, clientId: 'tok-c', protocolVersion: 5 });
    await a.endAsync();
    const bClosed = new Promise<void>((r) => b.stream.once('close', () => r()));
    const cDisconnect = new Promise<number | undefined>((r) => c.once('disconnect', (p) => r(p.reasonCode)));
    const out = await api(s.url, 'POST', '/v1/logout', { token });
    assert.equal(out.status, 200);
    await bClosed;
    assert.equal(await cDisconnect, 0x87, 'a v5 client is told: not authorized (token revoked)');
    const again = await mqtt.connectAsync(tcpUrl(s), { ...opts, clientId: 'tok-d' }).then(
      () => 'connected',
      (err: Error) => err.message,
    );
    assert.match(again, /Bad username or password|Not authorized|refused/i);
    c.end(true);
  });
});

describe('open files at start', () => {
  it('warns when the listeners\' connection caps need more open files than the limit allows', { skip: process.platform !== 'linux' }, async () => {
    const lines: { level: number; msg: string }[] = [];
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
          done();
        },
      }),
    );
    const s = await startServer({ mqttMaxConnections: 10_000_000, stompMaxConnections: 10, httpMaxConnections: 10 }, undefined, undefined, log);
    try {
      const warning = lines.find((l) => /^open files/.test(l.msg));
      assert.ok(warning, 'the limit is logged at start');
      assert.equal(warning.level, 40);
      assert.match(warning.msg, /add up to 10000020 \(http 10, stomp 10, mqtt 10000000\)/);
    } finally {
      await s.stop();
    }
  });
});
