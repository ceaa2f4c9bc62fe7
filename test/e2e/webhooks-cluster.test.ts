/**
 * Webhooks in a cluster (issue 15): two `herald serve` processes on one
 * PostgreSQL and one Redis share one outbox. Each event is delivered by
 * exactly one node, whichever node wrote it; and the events a node had
 * claimed when it was killed with SIGKILL are taken over by the other once
 * its lease has run out.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, after } from 'node:test';
import { api, login, tempDir } from '../helpers/server.js';
import { runHerald, LOOPBACK_PORT_FLAGS, type HeraldProcess } from '../helpers/process.js';
import { freshClusterName, freshDatabase, REDIS_URL, servicesMissing } from '../helpers/services.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

const skip = servicesMissing('pg', 'redis');
const PASSWORD = 'cluster-webhook-admin-pw';

interface Node {
  name: string;
  proc: HeraldProcess;
  url: string;
}

describe('webhooks in a cluster of two processes', { skip }, () => {
  const dir = tempDir('herald-wh-cluster-');
  const procs: HeraldProcess[] = [];
  const hooks: WebhookReceiver[] = [];
  after(async () => {
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
    }
    for (const h of hooks) await h.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function cluster(hook: WebhookReceiver, extra: Record<string, unknown> = {}) {
    const db = await freshDatabase();
    const name = freshClusterName();
    const config = join(dir, `${name}.json`);
    writeFileSync(config, JSON.stringify({ webhooks: [{ url: hook.url, events: ['message.published', 'message.undelivered'], secret: hook.secret }], webhookRetryBaseMs: 100, ...extra }));
    return async (node: string): Promise<Node> => {
      const proc = runHerald(['serve', ...LOOPBACK_PORT_FLAGS, '--node-name', node], {
        HERALD_CONFIG: config,
        HERALD_DATABASE_URL: db,
        HERALD_REDIS_URL: REDIS_URL!,
        HERALD_CLUSTER_NAME: name,
        HERALD_PRESENCE_TTL_SECONDS: '2',
        HERALD_ADMIN_PASSWORD: PASSWORD,
        HERALD_LOG_LEVEL: 'warn',
      });
      procs.push(proc);
      const m = await proc.waitFor(/^listening http (\S+)$/, 30_000);
      return { name: node, proc, url: `http://${m[1]!}` };
    };
  }

  const delivered = async (node: Node): Promise<number> => {
    const text = await (await fetch(node.url + '/metrics')).text();
    return [...text.matchAll(/^herald_webhook_deliveries_total\{webhook="[^"]+"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  };

  it('delivers each event once, by one node, whichever node wrote it', async () => {
    const hook = await WebhookReceiver.start();
    hooks.push(hook);
    const start = await cluster(hook);
    const a = await start('a');
    const b = await start('b');
    const tokenA = await login(a.url, 'admin', PASSWORD);
    const tokenB = await login(b.url, 'admin', PASSWORD);
    const user = await api(a.url, 'POST', '/api/users', { token: tokenA, body: { name: 'away', password: 'away-password', role: 'user' } });
    assert.equal(user.status, 200, user.body.message);
    const total = 400;
    for (let i = 0; i < total; i += 8) {
      const batch = Array.from({ length: 8 }, (_, j) => {
        const n = i + j;
        const [node, token] = n % 2 === 0 ? [a, tokenA] : [b, tokenB];
        return n % 4 < 2
          ? api(node.url, 'POST', '/api/publish', { token, body: { destination: `/topic/c.${n % 5}`, body: `p${n}` } })
          : api(node.url, 'POST', '/api/message/sendMessage', { token, body: { title: 't', content: `m${n}`, type: 0, receiver: ['away'] } });
      });
      for (const r of await Promise.all(batch)) assert.equal(r.status, 200, r.body.message);
    }
    await hook.until(() => hook.unique().length >= total, `${total} events`, 30_000);
    await new Promise((r) => setTimeout(r, 1500)); // time for a second delivery, were there one
    const perEvent = new Map<string, number>();
    for (const r of hook.requests) perEvent.set(String(r.headers['herald-event-id']), (perEvent.get(String(r.headers['herald-event-id'])) ?? 0) + 1);
    assert.equal(perEvent.size, total);
    assert.deepEqual([...perEvent.values()].filter((n) => n !== 1), [], 'one request per event');
    assert.ok(hook.requests.every((r) => r.valid));
    const [byA, byB] = [await delivered(a), await delivered(b)];
    assert.equal(byA + byB, total, `delivered by a (${byA}) and b (${byB}), none by both`);
    assert.ok(byA > 0 && byB > 0, 'both nodes deliver');
    for (const n of [a, b]) {
      n.proc.child.kill('SIGTERM');
      await n.proc.exited;
    }
  });

  it('takes over the events a killed node had claimed, once its lease has run out', async () => {
    const hook = await WebhookReceiver.start();
    hooks.push(hook);
    const start = await cluster(hook, { webhookTimeoutMs: 60_000, webhookConcurrency: 64 });
    const a = await start('a');
    const token = await login(a.url, 'admin', PASSWORD);
    hook.hold(); // a's requests arrive and are never answered: a holds its claims
    const count = 20;
    for (let i = 0; i < count; i++) {
      const r = await api(a.url, 'POST', '/api/publish', { token, body: { destination: `/topic/k.${i}`, body: `held ${i}` } });
      assert.equal(r.status, 200, r.body.message);
    }
    await hook.until(() => new Set(hook.requests.map((r) => r.headers['herald-event-id'])).size === count, `a sending all ${count}`, 10_000);
    const b = await start('b');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(new Set(hook.requests.map((r) => r.headers['herald-event-id'])).size, count, 'b leaves a\'s claims alone while a lives');
    assert.equal(hook.requests.length, count, 'no request from b yet');

    a.proc.child.kill('SIGKILL');
    await a.proc.exited;
    const killedAt = Date.now();
    hook.release();
    const again = (): Set<string> => new Set(hook.requests.filter((r) => r.at > killedAt).map((r) => String(r.headers['herald-event-id'])));
    await hook.until(() => again().size === count, `b sending all ${count} again`, 30_000);
    assert.equal(hook.unique().length, count);
    assert.equal(await delivered(b), count, 'b delivered every one');
    b.proc.child.kill('SIGTERM');
    await b.proc.exited;
  });
});
