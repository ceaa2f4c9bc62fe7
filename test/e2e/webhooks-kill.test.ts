/**
 * The outbox survives kill -9 (issue 15): a real `herald serve` process
 * queues 1,000 events while its receiver is down (half written with the
 * change they describe, half batched), is killed with SIGKILL, and started
 * again on the same data directory: every one of the 1,000 reaches the
 * receiver, in order per key.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, after } from 'node:test';
import { api, login, tempDir } from '../helpers/server.js';
import { runHerald, LOOPBACK_PORT_FLAGS, type HeraldProcess } from '../helpers/process.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

const PASSWORD = 'kill-test-admin-pw';

interface Row {
  id: string;
  eventId: string;
  orderKey: string;
}

async function start(dir: string, config: string): Promise<{ proc: HeraldProcess; url: string }> {
  const proc = runHerald(['serve', ...LOOPBACK_PORT_FLAGS, '--data-dir', dir], { HERALD_CONFIG: config, HERALD_ADMIN_PASSWORD: PASSWORD });
  const m = await proc.waitFor(/^listening http (\S+)$/);
  return { proc, url: `http://${m[1]!}` };
}

async function pendingRows(url: string, admin: string): Promise<Row[]> {
  const out: Row[] = [];
  let before = '';
  for (;;) {
    const page = await api<Row[]>(url, 'GET', `/api/admin/webhooks/deliveries?state=pending&limit=500${before}`, { token: admin });
    out.push(...page.body.data);
    if (page.body.data.length < 500) return out;
    before = `&before=${page.body.data.at(-1)!.id}`;
  }
}

describe('webhooks: kill -9 with 1,000 events queued', () => {
  const dir = tempDir('herald-wh-kill-');
  let hook: WebhookReceiver | undefined;
  let running: HeraldProcess | undefined;
  after(async () => {
    if (running && running.child.exitCode === null) {
      running.child.kill('SIGKILL');
      await running.exited;
    }
    await hook?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses none of them', async () => {
    hook = await WebhookReceiver.start();
    const config = join(dir, 'herald.config.json');
    writeFileSync(
      config,
      JSON.stringify({
        webhooks: [{ url: hook.url, events: ['message.undelivered', 'message.published'], secret: hook.secret }],
        webhookRetryBaseMs: 100,
        webhookRetryMaxMs: 500,
        webhookMaxAttempts: 1000,
        logLevel: 'warn',
      }),
    );
    await hook.down();
    let { proc, url } = await start(join(dir, 'data'), config);
    running = proc;
    const admin = await login(url, 'admin', PASSWORD);
    const user = await api<{ id: string }>(url, 'POST', '/api/users', { token: admin, body: { name: 'offline', password: 'offline-password', role: 'user' } });
    assert.equal(user.status, 200, user.body.message);

    // 500 message-service sends to a user with no session (message.undelivered, written with the message)
    // and 500 topic publishes (message.published, batched), ten requests at a time.
    const jobs = Array.from({ length: 1000 }, (_, i) => () =>
      i % 2 === 0
        ? api(url, 'POST', '/api/message/sendMessage', { token: admin, body: { title: `n${i}`, content: `message ${i}`, type: 0, receiver: ['offline'] } })
        : api(url, 'POST', '/api/publish', { token: admin, body: { destination: `/topic/feed.${i % 7}`, body: `publish ${i}` } }),
    );
    for (let i = 0; i < jobs.length; i += 10) {
      const answers = await Promise.all(jobs.slice(i, i + 10).map((j) => j()));
      for (const a of answers) assert.equal(a.status, 200, a.body.message);
    }
    // Queued: all 1,000 are rows in the store (the batched ones within a few ms).
    let queued: Row[] = [];
    const deadline = Date.now() + 10_000;
    while ((queued = await pendingRows(url, admin)).length < 1000) {
      assert.ok(Date.now() < deadline, `1,000 events queued (${queued.length})`);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(queued.length, 1000);

    proc.child.kill('SIGKILL');
    const gone = await proc.exited;
    assert.equal(gone.signal, 'SIGKILL');
    await hook.up();
    ({ proc, url } = await start(join(dir, 'data'), config));
    running = proc;

    await hook.until(() => hook!.unique().length >= 1000, '1,000 events after the restart', 60_000);
    const got = new Map(hook.unique().map((e) => [e.id, e]));
    const lost = queued.filter((r) => !got.has(r.eventId));
    assert.deepEqual(lost, [], '0 lost');
    assert.equal(got.size, 1000, 'and nothing else');
    assert.ok(hook.requests.every((r) => r.valid));
    const contents = [...got.values()].map((e) =>
      e.type === 'message.undelivered' ? (e.data['message'] as { content: string }).content : (e.data['payload'] as string),
    );
    assert.deepEqual(contents.map((c) => Number(c.split(' ')[1])).sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i), 'each event once');

    // In order per key: the offline user's messages, and each topic's publishes.
    const firstSeen = new Map<string, number>();
    hook.received.forEach((e, i) => firstSeen.has(e.id) || firstSeen.set(e.id, i));
    const byKey = new Map<string, Row[]>();
    for (const r of queued) byKey.set(r.orderKey, [...(byKey.get(r.orderKey) ?? []), r]);
    assert.equal(byKey.size, 8, 'the user, and seven topics');
    for (const [key, rows] of byKey) {
      const written = rows.sort((a, b) => Number(a.id) - Number(b.id)).map((r) => r.eventId);
      assert.deepEqual([...written].sort((a, b) => firstSeen.get(a)! - firstSeen.get(b)!), written, `${key} in order`);
    }
    proc.child.kill('SIGTERM');
    await proc.exited;
  });
});
