/**
 * A client's PUBLISH packets are handled in the order sent, whether each is
 * handled at once (the fast path: nothing to wait for) or waits (an ACL hook
 * question, a retained write, a store commit): one that waits holds back
 * every packet after it, and those are handled in order once it is done.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { tcpUrl } from '../helpers/mqtt.js';

describe('MQTT publish order across the fast path and packets that wait', () => {
  let backEnd: Server;
  let s: TestServer;
  const asked: string[] = [];

  before(async () => {
    // The ACL hook answers `slow/…` after 300 ms and everything else at once; publishing to `denied/…` is refused.
    backEnd = createServer((req: IncomingMessage, res: ServerResponse) => {
      let raw = '';
      req.on('data', (d: Buffer) => (raw += d.toString()));
      req.on('end', () => {
        const q = JSON.parse(raw) as Record<string, unknown>;
        const topic = String(q['topic']);
        asked.push(topic);
        const answer = JSON.stringify({ allow: q['action'] !== 'publish' || !topic.startsWith('denied/') });
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(answer), topic.startsWith('slow/') ? 300 : 0);
      });
    });
    await new Promise<void>((r) => backEnd.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(backEnd.address() as AddressInfo).port}`;
    s = await startServer({ aclHookUrl: `${base}/acl`, aclHookTimeoutMs: 2000, aclHookCacheSeconds: 60 });
    assert.equal((await api(s.url, 'POST', '/api/users', { token: await login(s.url), body: { name: 'bob', password: 'bob-password-1', role: 'user' } })).status, 200);
  });
  after(async () => {
    await s?.stop();
    backEnd.closeAllConnections();
    await new Promise((r) => backEnd.close(r));
  });

  async function clients(version: 4 | 5): Promise<{ pub: mqtt.MqttClient; sub: mqtt.MqttClient; got: string[]; done: () => Promise<void> }> {
    const sub = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password-1', clientId: `order-sub-${version}`, protocolVersion: version, reconnectPeriod: 0 });
    const got: string[] = [];
    sub.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`));
    await sub.subscribeAsync(['fast/#', 'slow/#', 'denied/#'], { qos: 1 });
    const pub = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password-1', clientId: `order-pub-${version}`, protocolVersion: version, reconnectPeriod: 0 });
    return { pub, sub, got, done: async () => void (await Promise.all([pub.endAsync(), sub.endAsync()])) };
  }

  async function until(cond: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(cond(), what);
  }

  for (const version of [4, 5] as const) {
    it(`MQTT ${version === 4 ? '3.1.1' : '5'}: QoS 0 packets behind one that waits for the ACL hook keep their order`, async () => {
      const { pub, got, done } = await clients(version);
      try {
        // Warm the cache for fast/…: later ones are decided at once.
        pub.publish(`fast/${version}`, 'warm', { qos: 0 });
        await until(() => got.length === 1, 'the first message arrives');
        // One write: a packet that waits 300 ms, then packets the fast path could handle at once.
        const run = [`slow/${version} 1`, `fast/${version} 2`, `fast/${version} 3`, `denied/${version} 4`, `fast/${version} 5`];
        for (const m of run) {
          const [topic, body] = m.split(' ') as [string, string];
          pub.publish(topic, body, { qos: 0 });
        }
        await until(() => got.length === 5, `four more messages arrive (got ${JSON.stringify(got)})`);
        assert.deepEqual(got.slice(1), [`slow/${version} 1`, `fast/${version} 2`, `fast/${version} 3`, `fast/${version} 5`]);
        assert.ok(asked.includes(`slow/${version}`) && asked.includes(`denied/${version}`));
      } finally {
        await done();
      }
    });
  }

  it('QoS 1: acknowledgements come in order, and a refused publish among them is acknowledged with 0x87 (v5)', async () => {
    const { pub, got, done } = await clients(5);
    try {
      const acks: (number | undefined)[] = [];
      const sends = ['slow/q 1', 'fast/q 2', 'denied/q 3', 'fast/q 4'].map((m, i) => {
        const [topic, body] = m.split(' ') as [string, string];
        return pub.publishAsync(topic, body, { qos: 1 }).then(
          (packet) => void (acks[i] = (packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0),
          (err: Error & { code?: number }) => void (acks[i] = err.code),
        );
      });
      await Promise.all(sends);
      assert.deepEqual(acks, [0, 0, 0x87, 0]);
      await until(() => got.length === 3, 'three messages arrive');
      assert.deepEqual(got, ['slow/q 1', 'fast/q 2', 'fast/q 4']);
    } finally {
      await done();
    }
  });
});
