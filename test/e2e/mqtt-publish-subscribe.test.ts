/**
 * MQTT publish and subscribe with mqtt.js (3.1.1 and 5, TCP and WebSocket):
 * QoS 0, 1 and 2, the meeting with STOMP and the JSON WebSocket on one
 * topic, retained messages, `$user/{name}` mailboxes, shared subscriptions,
 * access rules, anonymous clients and $SYS.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import { api, login, startServer, tempDir, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader } from '../helpers/stomp.js';
import { JsonClient } from '../helpers/json-ws.js';
import { ADMIN, nextMessage, suback, tcpUrl, wsUrl } from '../helpers/mqtt.js';

describe('MQTT with mqtt.js', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ mqttMaxKeepAliveSeconds: 120 });
  });
  after(() => s.stop());

  for (const protocolVersion of [4, 5] as const) {
    for (const transport of ['tcp', 'ws'] as const) {
      it(`publishes and subscribes at QoS 0, 1 and 2 (v${protocolVersion} over ${transport})`, async () => {
        const url = transport === 'tcp' ? tcpUrl(s) : wsUrl(s);
        const sub = await mqtt.connectAsync(url, { ...ADMIN, protocolVersion });
        const pub = await mqtt.connectAsync(url, { ...ADMIN, protocolVersion });
        await sub.subscribeAsync('room/+/input', { qos: 2 });
        for (const qos of [0, 1, 2] as const) {
          const got = nextMessage(sub);
          await pub.publishAsync(`room/${qos}/input`, Buffer.from([qos, 0, 255]), { qos });
          const m = await got;
          assert.equal(m.topic, `room/${qos}/input`);
          assert.deepEqual([...m.payload], [qos, 0, 255]);
          assert.equal(m.packet.qos, qos, 'delivered at min(subscription, publish) QoS');
        }
        await pub.endAsync();
        await sub.endAsync();
      });
    }
  }

  it('delivers MQTT ⇄ STOMP ⇄ JSON WebSocket on one topic, with content type and user properties mapped', async () => {
    const token = await login(s.url);
    const m5 = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await m5.subscribeAsync('scores/#', { qos: 1 });
    const stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: token });
    stomp.send('SUBSCRIBE\nid:1\ndestination:/topic/scores.#\nreceipt:r\n\n\0');
    await stomp.next('RECEIPT');
    const json = await JsonClient.open(s.url.replace(/^http/, 'ws') + '/websocket/' + token);
    json.send({ action: 'subscribe', topic: 'scores.*' });
    await json.next('ok');

    const own = nextMessage(m5, 'scores/game1');
    await m5.publishAsync('scores/game1', '{"home":1}', { qos: 1, properties: { contentType: 'application/json', userProperties: { league: 'A' } } });
    const sf = await stomp.next('MESSAGE');
    assert.equal(frameHeader(sf, 'destination'), '/topic/scores.game1');
    assert.equal(frameHeader(sf, 'content-type'), 'application/json');
    assert.equal(frameHeader(sf, 'league'), 'A');
    assert.equal(sf.body.toString(), '{"home":1}');
    const je = await json.next('topic');
    assert.deepEqual([je.topic, je.data], ['scores.game1', { home: 1 }]);
    assert.equal((await own).payload.toString(), '{"home":1}', 'the publisher is subscribed too');

    const fromStomp = nextMessage(m5, 'scores/game2');
    stomp.send('SEND\ndestination:/topic/scores.game2\ncontent-type:text/plain\nreferee:B\n\nhalf time\0');
    const mm = await fromStomp;
    assert.equal(mm.payload.toString(), 'half time');
    assert.equal(mm.packet.properties?.contentType, 'text/plain');
    assert.deepEqual({ ...mm.packet.properties?.userProperties }, { referee: 'B' });

    const fromJson = nextMessage(m5, 'scores/game3');
    json.send({ action: 'publish', topic: 'scores.game3', data: { away: 2 } });
    assert.equal((await fromJson).payload.toString(), '{"away":2}');
    await m5.endAsync();
    stomp.close();
    json.close();
  });

  it('keeps retained messages across a restart, sends them on subscribe, and clears them with an empty payload', async () => {
    const dir = tempDir();
    const a = await startServer({}, undefined, dir);
    const c = await mqtt.connectAsync(tcpUrl(a), ADMIN);
    await c.publishAsync('status/door', 'open', { qos: 1, retain: true });
    await c.endAsync();
    await a.server.stop();
    const b = await startServer({}, undefined, dir);
    const late = await mqtt.connectAsync(tcpUrl(b), ADMIN);
    const got = nextMessage(late);
    await late.subscribeAsync('status/#', { qos: 1 });
    const m = await got;
    assert.equal(m.payload.toString(), 'open');
    assert.equal(m.packet.retain, true);
    await late.publishAsync('status/door', '', { qos: 1, retain: true });
    const again = await mqtt.connectAsync(tcpUrl(b), ADMIN);
    let any = false;
    again.on('message', () => (any = true));
    await again.subscribeAsync('status/#', { qos: 1 });
    await again.publishAsync('sync/x', 'x', { qos: 1 });
    assert.equal(any, false, 'cleared');
    await late.endAsync();
    await again.endAsync();
    await b.stop();
  });

  it('delivers $user/{name} like STOMP /user/queue/{name}, and refuses other $ topics', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await c.subscribeAsync('$user/messages', { qos: 1 });
    const got = nextMessage(c);
    const r = await api(s.url, 'POST', '/api/message/sendMessage', { token: await login(s.url), body: { content: 'via mqtt', receiver: ['admin'], title: 'hello', type: 0 } });
    assert.equal(r.status, 200);
    const m = await got;
    assert.equal(m.topic, '$user/messages');
    assert.equal(JSON.parse(m.payload.toString()).content, 'via mqtt');
    await assert.rejects(c.publishAsync('$SYS/fake', 'x', { qos: 1 }), /Not authorized/);
    await c.endAsync();
  });
});

describe('MQTT shared subscriptions, ACL rules, anonymous clients and $SYS', () => {
  let s: TestServer;
  let dir: string;
  before(async () => {
    dir = tempDir();
    const { writeFileSync } = await import('node:fs');
    const acl = `${dir}/acl.json`;
    writeFileSync(
      acl,
      JSON.stringify([
        { effect: 'allow', action: 'all', topic: 'public/#', who: '*' },
        { effect: 'allow', action: 'all', topic: 'users/{user}/#', who: 'user' },
        { effect: 'deny', action: 'publish', topic: 'jobs/#', who: 'name:bob' },
        { effect: 'allow', action: 'all', topic: 'jobs/#', who: 'user' },
        { effect: 'allow', action: 'subscribe', topic: '$SYS/#', who: 'role:admin' },
        { effect: 'allow', action: 'all', topic: '#', who: 'role:admin' },
      ]),
    );
    s = await startServer({ aclFile: acl, allowAnonymous: true, sysIntervalSeconds: 1 }, undefined, dir);
    await api(s.url, 'POST', '/api/users', { token: await login(s.url), body: { name: 'bob', password: 'bob-password' } });
  });
  after(() => s.stop());

  it('gives each message of a $share group to one member', async () => {
    const a = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const b = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const got: string[][] = [[], []];
    a.on('message', (_t, p) => got[0]!.push(p.toString()));
    b.on('message', (_t, p) => got[1]!.push(p.toString()));
    await a.subscribeAsync('$share/workers/jobs/+', { qos: 1 });
    await b.subscribeAsync('$share/workers/jobs/+', { qos: 1 });
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    for (let i = 0; i < 20; i++) await pub.publishAsync('jobs/render', String(i), { qos: 1 });
    const deadline = Date.now() + 5000;
    while (got[0]!.length + got[1]!.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual([...got[0]!, ...got[1]!].map(Number).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i));
    assert.ok(got[0]!.length > 0 && got[1]!.length > 0, `both members worked: ${got[0]!.length}/${got[1]!.length}`);
    for (const c of [a, b, pub]) await c.endAsync();
  });

  it('applies the ACL file: denied subscriptions get 0x80 / 0x87, denied publishes are dropped (v5: 0x87)', async () => {
    const bob4 = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password', protocolVersion: 4, reconnectPeriod: 0 });
    const granted = await suback(bob4, { 'users/bob/inbox': { qos: 1 }, 'users/alice/inbox': { qos: 1 }, 'secret/#': { qos: 0 }, '$SYS/#': { qos: 0 } });
    assert.deepEqual(granted, [1, 128, 128, 128]);
    const bob5 = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password', protocolVersion: 5, reconnectPeriod: 0 });
    assert.deepEqual(await suback(bob5, { 'secret/#': { qos: 0 } }), [0x87]);
    await assert.rejects(bob5.publishAsync('jobs/x', 'sneaky', { qos: 1 }), /Not authorized/);
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await watcher.subscribeAsync('jobs/#', { qos: 1 });
    let leaked = false;
    watcher.on('message', (t) => (t === 'jobs/y' ? (leaked = true) : undefined));
    await bob4.publishAsync('jobs/y', 'dropped', { qos: 1 }); // v3: acknowledged, then dropped
    await watcher.publishAsync('public/sync', 'x', { qos: 1 });
    assert.equal(leaked, false);
    for (const c of [bob4, bob5, watcher]) await c.endAsync();
  });

  it('checks the will topic at CONNECT like a publish: ACL-denied and $ topics are refused', async () => {
    const bob = (protocolVersion: 4 | 5, topic: string) =>
      mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password', protocolVersion, reconnectPeriod: 0, will: { topic, payload: Buffer.from('gone'), qos: 1, retain: false } });
    await assert.rejects(bob(4, 'jobs/status'), (err: Error & { code?: number }) => err.code === 5);
    await assert.rejects(bob(5, 'jobs/status'), (err: Error & { code?: number }) => err.code === 0x87);
    await assert.rejects(bob(5, '$SYS/broker/uptime'), (err: Error & { code?: number }) => err.code === 0x90);
    await assert.rejects(bob(4, '$SYS/broker/uptime'), (err: Error & { code?: number }) => err.code === 5);
    const ok = await bob(5, 'users/bob/status');
    // Its will still works: dropped without DISCONNECT, it is published.
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await watcher.subscribeAsync('users/bob/status', { qos: 1 });
    const got = new Promise<string>((r) => watcher.on('message', (_t, p) => r(p.toString())));
    ok.stream.destroy();
    assert.equal(await got, 'gone');
    await watcher.endAsync();
    ok.end(true);
  });

  it('applies the same rules to STOMP, the JSON WebSocket and HTTP publishes (no way around them by protocol)', async () => {
    const bobToken = await login(s.url, 'bob', 'bob-password');
    const admin = await login(s.url);
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const seen: string[] = [];
    watcher.on('message', (t, p) => seen.push(`${t}=${p.toString()}`));
    await watcher.subscribeAsync(['jobs/#', 'users/bob/#', 'alerts/#'], { qos: 1 });

    // STOMP: bob may not publish to jobs/# (deny rule), may to users/bob/# ({user} rule).
    const stomp = async () => {
      const c = await RawStomp.tcp(s.server.address('stomp').port);
      assert.equal((await c.connect({ passcode: bobToken })).command, 'CONNECTED');
      return c;
    };
    const ok = await stomp();
    ok.send('SEND\ndestination:/topic/users.bob.inbox\nreceipt:r1\n\nfrom stomp\0');
    await ok.next('RECEIPT');
    const denied = await stomp();
    denied.send('SEND\ndestination:/topic/jobs.x\nreceipt:r2\n\nsneaky\0');
    const err = await denied.next('ERROR');
    assert.equal(frameHeader(err, 'message'), 'not allowed');
    assert.equal(frameHeader(err, 'receipt-id'), 'r2');
    assert.match(err.body.toString(), /access rules do not let "bob" publish to \/topic\/jobs\.x/);
    await denied.closedPromise;
    const sub = await stomp();
    sub.send('SUBSCRIBE\nid:1\ndestination:/topic/secret.plans\n\n\0');
    assert.match((await sub.next('ERROR')).body.toString(), /do not let "bob" subscribe to \/topic\/secret\.plans/);

    // JSON WebSocket: refused in an error event; the socket stays and allowed traffic flows.
    const json = await JsonClient.open(wsUrl(s).replace('/mqtt', '') + '/websocket/' + bobToken);
    json.send({ action: 'publish', topic: 'jobs.y', data: 'sneaky' });
    const e1 = await json.next('error');
    assert.equal((e1.data as { code: string }).code, 'not_allowed');
    json.send({ action: 'subscribe', topic: 'secret.plans' });
    assert.match(((await json.next('error')).data as { message: string }).message, /do not let "bob" subscribe/);
    json.send({ action: 'publish', topic: 'users.bob.inbox', data: 'from json' });
    await json.sync();

    // HTTP: a service account the rules say nothing about may not publish to a topic; an admin may.
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'svc', password: 'svc-password', role: 'service' } });
    const svc = await login(s.url, 'svc', 'svc-password');
    const refused = await api(s.url, 'POST', '/api/publish', { token: svc, body: { destination: '/topic/alerts.fire', body: 'x' } });
    assert.equal(refused.status, 403);
    assert.match(refused.body.message, /access rules \(aclFile\) do not let "svc" publish to \/topic\/alerts\.fire/);
    const allowed = await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/alerts.fire', body: 'real' } });
    assert.equal(allowed.status, 200);

    // The MQTT watcher saw exactly the allowed messages.
    const deadline = Date.now() + 5000;
    while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(seen.sort(), ['alerts/fire=real', 'users/bob/inbox=from json', 'users/bob/inbox=from stomp']);
    json.close();
    ok.close();
    await watcher.endAsync();
  });

  it('accepts anonymous clients when allowed, within the rules for anonymous clients', async () => {
    const anon = await mqtt.connectAsync(tcpUrl(s), { protocolVersion: 4, reconnectPeriod: 0 });
    assert.deepEqual(await suback(anon, { 'public/news': { qos: 0 }, 'jobs/#': { qos: 0 } }), [0, 128]);
    await anon.endAsync();
  });

  it('publishes $SYS statistics that admins can read and users cannot', async () => {
    const admin = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const got = nextMessage(admin, '$SYS/broker/clients/connected');
    await admin.subscribeAsync('$SYS/#', { qos: 0 });
    assert.match((await got).payload.toString(), /^\d+$/);
    const all = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    let leaked = 0;
    all.on('message', () => leaked++);
    await all.subscribeAsync('#', { qos: 0 }); // '#' never matches $ topics
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(leaked, 0);
    await admin.endAsync();
    await all.endAsync();
  });
});
