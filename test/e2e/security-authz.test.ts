/**
 * Authorization attacks from outside (issue 13): each one against a real
 * server with real clients, and each refused.
 *
 * - ACL widening through placeholders (item 5): a client id `#` over MQTT
 *   and a STOMP `?device=%23` must not read `devices/victim/dev/secret`
 *   through the rule `devices/{clientid}/#`.
 * - Forged chat messages (item 3): nobody publishes straight to a chat
 *   thread's topic; the refusal is known the moment the thread exists and
 *   costs no store read per publish to an ordinary topic.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, it, before, after } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { NOT_A_THREAD_MS } from '../../src/apps/threads.js';
import { ManualClock } from '../../src/clock.js';
import { api, login, startServer, tempDir, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader, wsUrl } from '../helpers/stomp.js';

const SECRET = 'devices/victim/dev/secret';

function tcpUrl(s: TestServer): string {
  return `mqtt://127.0.0.1:${s.server.address('mqtt').port}`;
}

/** The granted QoS list of one SUBSCRIBE (128 / 0x80 = refused). */
async function granted(c: MqttClient, filter: string): Promise<number> {
  try {
    const [g] = await c.subscribeAsync(filter, { qos: 0 });
    return g!.qos;
  } catch (err) {
    // mqtt.js rejects a refused subscription, with the SUBACK attached.
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw err;
    return granted[0]!;
  }
}

describe('authorization: ACL placeholders do not widen (CVE-2017-7650 class)', () => {
  let s: TestServer;
  let malloryToken: string;
  before(async () => {
    const dir = tempDir();
    const acl = `${dir}/acl.json`;
    writeFileSync(
      acl,
      JSON.stringify([
        { effect: 'allow', action: 'all', topic: 'devices/{clientid}/#', who: 'user' },
        { effect: 'allow', action: 'all', topic: '#', who: 'role:admin' },
      ]),
    );
    s = await startServer({ aclFile: acl }, undefined, dir);
    const admin = await login(s.url);
    const made = await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'mallory', password: 'mallory-password' } });
    assert.equal(made.status, 200, made.body.message);
    malloryToken = await login(s.url, 'mallory', 'mallory-password');
  });
  after(() => s.stop());

  it('MQTT: client id "#" may not subscribe to another device, nor receive its messages', async () => {
    const mallory = await mqtt.connectAsync(tcpUrl(s), { username: 'mallory', password: 'mallory-password', clientId: '#', reconnectPeriod: 0 });
    const leaked: string[] = [];
    mallory.on('message', (t) => leaked.push(t));
    assert.equal(await granted(mallory, SECRET), 128, `${SECRET} refused`);
    assert.equal(await granted(mallory, 'devices/#'), 128, 'devices/# refused');
    const victim = await mqtt.connectAsync(tcpUrl(s), { username: 'admin', password: ADMIN_PASSWORD, clientId: 'victim', reconnectPeriod: 0 });
    await victim.publishAsync(SECRET, 'the secret', { qos: 1 });
    // Its own device still works, and a round trip there shows the secret was not delivered.
    const own = await mqtt.connectAsync(tcpUrl(s), { username: 'mallory', password: 'mallory-password', clientId: 'mallory-phone', reconnectPeriod: 0 });
    assert.equal(await granted(own, 'devices/mallory-phone/#'), 0);
    const back = new Promise<void>((r) => own.on('message', () => r()));
    await own.publishAsync('devices/mallory-phone/ping', 'x', { qos: 1 });
    await back;
    assert.deepEqual(leaked, []);
    for (const c of [mallory, victim, own]) await c.endAsync();
  });

  it('STOMP: ?device=%23 may not subscribe to another device', async () => {
    const c = await RawStomp.ws(wsUrl(s.url, '/stomp?device=%23'));
    assert.equal((await c.connect({ login: malloryToken })).command, 'CONNECTED');
    c.send(`SUBSCRIBE\nid:1\ndestination:/topic/${SECRET.replaceAll('/', '.')}\nreceipt:r1\n\n\0`);
    const answer = await c.next();
    assert.equal(answer.command, 'ERROR', `got ${answer.command}`);
    assert.match(answer.body.toString(), /do not let "mallory" subscribe/);
    c.close();
    // The device named in the URL still owns its own topics.
    const ok = await RawStomp.ws(wsUrl(s.url, '/stomp?device=mallory-phone'));
    assert.equal((await ok.connect({ login: malloryToken })).command, 'CONNECTED');
    ok.send('SUBSCRIBE\nid:1\ndestination:/topic/devices.mallory-phone.state\nreceipt:r2\n\n\0');
    assert.equal(frameHeader(await ok.next('RECEIPT'), 'receipt-id'), 'r2');
    ok.close();
  });
});

describe('authorization: chat thread topics are written by the server only', () => {
  const clock = new ManualClock(Date.now());
  let s: TestServer;
  let admin: string;
  let svc: string;
  let stranger: string;
  const THREAD = 'org1/visitor/v1';
  const TOPIC = 'org1/visitor/v1';

  before(async () => {
    s = await startServer({}, clock);
    admin = await login(s.url);
    for (const [name, role] of [['visitor1', 'user'], ['agent1', 'user'], ['stranger', 'user'], ['svc', 'service']] as const) {
      const made = await api(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password', role } });
      assert.equal(made.status, 200, made.body.message);
    }
    svc = await login(s.url, 'svc', 'svc-password');
    stranger = await login(s.url, 'stranger', 'stranger-password');
  });
  after(() => s.stop());

  it('refuses a direct publish the moment the thread is created, and not before', async () => {
    const broker = s.server.ctx.broker;
    assert.equal(await broker.publishRefusal(TOPIC), undefined, 'no thread yet: an ordinary topic');
    const created = await api(s.url, 'POST', '/api/v1/thread', {
      token: admin,
      body: { thread: THREAD, members: [{ user: 'visitor1', role: 'visitor' }, { user: 'agent1', role: 'agent' }] },
    });
    assert.equal(created.status, 200, created.body.message);
    const refusal = broker.publishRefusal(TOPIC);
    assert.equal(typeof refusal, 'string', 'answered at once, from memory');
    assert.match(refusal as string, /org1\.visitor\.v1 is a chat thread: send to \/app\/org1\.visitor\.v1/);
  });

  it('HTTP POST /api/publish to the thread topic is refused, for a service account and an admin alike', async () => {
    for (const token of [svc, admin]) {
      const r = await api(s.url, 'POST', '/api/publish', {
        token,
        body: { destination: '/topic/org1.visitor.v1', body: { uid: 'forged-1', type: 'TEXT', content: 'pay here', status: 'SUCCESS', user: { uid: 'agent1' } } },
      });
      assert.ok(r.status >= 400 && r.status < 500, `refused, got ${r.status} ${r.body.message}`);
      assert.match(r.body.message, /chat thread/);
    }
    const history = await api<{ uid: string }[]>(s.url, 'GET', '/api/v1/thread/org1.visitor.v1/messages?limit=100', { token: admin });
    assert.equal(history.body.data.filter((m) => m.uid === 'forged-1').length, 0);
  });

  it('STOMP SEND to the thread topic by a non-member is refused', async () => {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await c.connect({ passcode: stranger })).command, 'CONNECTED');
    c.send('SEND\ndestination:/topic/org1.visitor.v1\ncontent-type:application/json\nreceipt:f1\n\n{"uid":"forged-2","type":"TEXT","content":"hi","user":{"uid":"carol"}}\0');
    const answer = await c.next();
    assert.equal(answer.command, 'ERROR', `no RECEIPT for a forged message; got ${answer.command}`);
    assert.match(answer.body.toString(), /chat thread/);
    c.close();
  });

  it('MQTT 5 PUBLISH (retained) to the thread topic by a non-member is refused and nothing is retained', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { username: 'stranger', password: 'stranger-password', protocolVersion: 5, reconnectPeriod: 0 });
    await assert.rejects(c.publishAsync(TOPIC, '{"uid":"forged-3","type":"TEXT","content":"hi"}', { qos: 1, retain: true }));
    await c.endAsync();
    const later = await mqtt.connectAsync(tcpUrl(s), { username: 'admin', password: ADMIN_PASSWORD, protocolVersion: 5, reconnectPeriod: 0 });
    const got: string[] = [];
    later.on('message', (_t, p) => got.push(p.toString()));
    await later.subscribeAsync(TOPIC, { qos: 1 });
    await new Promise((r) => setTimeout(r, 100)); // a retained copy would follow the SUBACK at once
    assert.deepEqual(got, [], 'no retained forgery');
    await later.endAsync();
  });

  it('cluster mode: publishes to an ordinary topic read the store once per few seconds, and a change clears the memory', async () => {
    const threads = s.server.threads;
    const store = s.server.ctx.store;
    threads.rememberMisses = false;
    let reads = 0;
    const getThread = store.getThread.bind(store);
    store.getThread = (topic) => {
      reads++;
      return getThread(topic);
    };
    try {
      const answers = await Promise.all(Array.from({ length: 50 }, () => threads.publishRefusal('plain/news')));
      assert.deepEqual(new Set(answers), new Set([undefined]));
      for (let i = 0; i < 50; i++) assert.equal(threads.publishRefusal('plain/news'), undefined, 'answered from memory');
      assert.equal(reads, 1, 'one store read for 100 publishes');
      clock.advance(NOT_A_THREAD_MS);
      assert.equal(await threads.publishRefusal('plain/news'), undefined);
      assert.equal(reads, 2, 'read again once the memory is over');

      // Another node creates a thread on a topic this node remembers as ordinary; its announcement clears the memory.
      assert.equal(await threads.publishRefusal('org2/visitor/v9'), undefined);
      const agent = (await store.getUserByName('agent1'))!;
      await store.createThread('org2/visitor/v9', agent.id, clock.now(), [{ userId: agent.id, role: 'agent' }]);
      threads.forget('org2/visitor/v9');
      assert.match((await threads.publishRefusal('org2/visitor/v9')) ?? '', /chat thread/);

      // Created on this node: refused at once, with no read.
      assert.equal(await threads.publishRefusal('org3/visitor/v1'), undefined);
      const before = reads;
      const created = await api(s.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'org3/visitor/v1', members: [{ user: 'agent1', role: 'agent' }] } });
      assert.equal(created.status, 200, created.body.message);
      assert.match(String(threads.publishRefusal('org3/visitor/v1')), /chat thread/);
      assert.equal(reads, before, 'no store read after the creation');
    } finally {
      store.getThread = getThread;
      threads.rememberMisses = true;
    }
  });
});
