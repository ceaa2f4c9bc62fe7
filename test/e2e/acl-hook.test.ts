/**
 * The ACL hook (aclHookUrl) and the connect answer's grants, with a real
 * back end in the test process: subscribes and publishes over MQTT (3.1.1
 * and 5), STOMP and the JSON WebSocket are decided by the hook where the
 * rules leave them open, refused in each protocol's words, cached per client
 * and topic, and denied when the back end is slow; a session whose connect
 * answer granted topics is held to them.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { JsonClient, jsonUrl } from '../helpers/json-ws.js';
import { suback, tcpUrl } from '../helpers/mqtt.js';
import { frameHeader, RawStomp } from '../helpers/stomp.js';

describe('the ACL hook and the connect answer\'s grants', () => {
  const questions: Record<string, unknown>[] = [];
  let backEnd: Server;
  let s: TestServer;
  let bobToken: string;

  before(async () => {
    backEnd = createServer((req: IncomingMessage, res: ServerResponse) => {
      let raw = '';
      req.on('data', (d: Buffer) => (raw += d.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as Record<string, unknown>;
        const reply = (answer: unknown, delayMs = 0): void => void setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)), delayMs);
        if (req.url === '/connect') {
          // "app-carol" is a session limited to her room.
          if (body['password'] === 'app-carol') return reply({ allow: true, user: 'carol', publish: ['rooms/{user}/say'], subscribe: ['rooms/{user}/#'] });
          return reply({ allow: false, reason: 'unknown' });
        }
        questions.push(body);
        const topic = String(body['topic']);
        if (topic.startsWith('slow/')) return reply({ allow: true }, 1500);
        reply({ allow: topic.startsWith('news/open') || topic === 'chat/ok' });
      });
    });
    await new Promise<void>((r) => backEnd.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(backEnd.address() as AddressInfo).port}`;
    s = await startServer({ authHookUrl: `${base}/connect`, aclHookUrl: `${base}/acl`, aclHookTimeoutMs: 400, aclHookCacheSeconds: 60 });
    const admin = await login(s.url);
    assert.equal((await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'bob', password: 'bob-password-1', role: 'user' } })).status, 200);
    bobToken = await login(s.url, 'bob', 'bob-password-1');
  });
  after(async () => {
    await s?.stop();
    backEnd.closeAllConnections();
    await new Promise((r) => backEnd.close(r));
  });

  it('MQTT: the hook decides subscribes and publishes, is told who asks, and its answers are cached per client and topic', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password-1', clientId: 'bob-1', protocolVersion: 5, reconnectPeriod: 0 });
    try {
      assert.deepEqual(await suback(c, { 'news/open/#': { qos: 1 }, 'news/closed': { qos: 1 } }), [1, 0x87]);
      const q = questions.find((x) => x['topic'] === 'news/open/#')!;
      assert.deepEqual(q, { action: 'subscribe', topic: 'news/open/#', user: 'bob', role: 'user', clientId: 'bob-1', protocol: 'mqtt-tcp', anonymous: false });
      const before = questions.length;
      assert.deepEqual(await suback(c, { 'news/open/#': { qos: 1 } }), [1]);
      assert.equal(questions.length, before, 'cached');
      await c.publishAsync('news/open/a', 'x', { qos: 1 });
      await assert.rejects(c.publishAsync('news/closed', 'x', { qos: 1 }), /Publish error: Not authorized/);
      // Slow: denied at aclHookTimeoutMs, not cached (asked again next time).
      const started = Date.now();
      assert.deepEqual(await suback(c, { 'slow/x': { qos: 0 } }), [0x87]);
      assert.ok(Date.now() - started < 1400);
      const slowAsked = questions.filter((x) => x['topic'] === 'slow/x').length;
      await suback(c, { 'slow/x': { qos: 0 } });
      assert.equal(questions.filter((x) => x['topic'] === 'slow/x').length, slowAsked + 1);
    } finally {
      await c.endAsync();
    }
  });

  it('STOMP: a refused SUBSCRIBE and SEND are ERROR frames; allowed ones work', async () => {
    const conn = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await conn.connect({ login: 'bob', passcode: 'bob-password-1' })).command, 'CONNECTED');
    conn.send('SUBSCRIBE\nid:1\ndestination:/topic/chat.ok\nreceipt:r1\n\n\0');
    assert.equal((await conn.next('RECEIPT')).command, 'RECEIPT');
    conn.send('SEND\ndestination:/topic/chat.ok\n\nhello\0');
    assert.equal((await conn.next('MESSAGE')).body.toString(), 'hello');
    conn.send('SUBSCRIBE\nid:2\ndestination:/topic/chat.nope\nreceipt:r2\n\n\0');
    const err = await conn.next('ERROR');
    assert.equal(frameHeader(err, 'message'), 'not allowed');
    assert.match(err.body.toString(), /the access rules do not let "bob" subscribe/);
  });

  it('JSON WebSocket: a refused publish is a not_allowed error event', async () => {
    const j = await JsonClient.open(jsonUrl(s, bobToken));
    try {
      j.send({ action: 'publish', topic: 'news.closed', data: 'x' });
      const e = await j.next('error');
      assert.equal((e.data as { code: string }).code, 'not_allowed');
      assert.ok(questions.some((q) => q['topic'] === 'news/closed' && q['protocol'] === 'json-ws' && q['action'] === 'publish'));
    } finally {
      j.close();
    }
  });

  it('a session the connect hook granted topics to stays inside them, without asking the ACL hook', async () => {
    const before = questions.length;
    const c = await mqtt.connectAsync(tcpUrl(s), { username: 'carol', password: 'app-carol', protocolVersion: 5, reconnectPeriod: 0 });
    try {
      assert.deepEqual(await suback(c, { 'rooms/carol/#': { qos: 1 }, 'rooms/dave/#': { qos: 1 }, 'news/open/x': { qos: 1 } }), [1, 0x87, 0x87]);
      await c.publishAsync('rooms/carol/say', 'hi', { qos: 1 });
      await assert.rejects(c.publishAsync('rooms/carol/other', 'hi', { qos: 1 }), /Publish error: Not authorized/);
      assert.equal(questions.length, before, 'the grants decided everything');
    } finally {
      await c.endAsync();
    }
  });

  it('refuses to start with a hook URL that is not http(s)', async () => {
    await assert.rejects(startServer({ aclHookUrl: 'ftp://example/acl' }), /aclHookUrl must be an http:\/\/ or https:\/\/ URL/);
    await assert.rejects(startServer({ authHookUrl: 'not a url' }), /authHookUrl must be an http:\/\/ or https:\/\/ URL/);
  });
});
