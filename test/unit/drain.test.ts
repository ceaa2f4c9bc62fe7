/** The lame-duck drain's pacing, on fake sessions (the protocols' goodbyes are in test/e2e/drain.test.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { CloseReason, Session } from '../../src/core/session.js';
import { Drainer, batchInterval } from '../../src/drain.js';

const log = pino({ level: 'silent' });

class FakeSessions {
  readonly byId = new Map<string, Session>();
  readonly told: { id: string; at: number; reason: CloseReason }[] = [];
  private n = 0;

  add(count: number): void {
    for (let i = 0; i < count; i++) {
      const id = `s${++this.n}`;
      const s: Session = {
        id,
        protocol: 'json-ws',
        principal: { userId: '1', name: 'u', role: 'user', credential: { kind: 'password' } },
        remoteAddress: '127.0.0.1',
        device: 'test',
        connectedAt: Date.now(),
        stats: () => ({ subscriptions: 0, unacked: 0 }),
        describe: () => ({ subscriptions: [], inflight: { messages: 0, bytes: 0 }, held: { messages: 0, bytes: 0 }, wire: { bytesIn: 0, bytesOut: 0, tls: false }, credential: 'password' }),
        close: (reason) => {
          this.told.push({ id, at: Date.now(), reason });
          this.byId.delete(id);
        },
      };
      this.byId.set(id, s);
    }
  }

  get size(): number {
    return this.byId.size;
  }

  all(): IterableIterator<Session> {
    return this.byId.values();
  }
}

function drainer(sessions: FakeSessions, readySeconds: number, seconds: number): { d: Drainer; stopped: number[] } {
  const stopped: number[] = [];
  const d = new Drainer({ sessions, log, stopAccepting: () => stopped.push(Date.now()) }, { readySeconds, seconds });
  return { d, stopped };
}

describe('Drainer', () => {
  it('paces batches of about 20 per window, 100 to 250 ms apart', () => {
    assert.equal(batchInterval(0), 100);
    assert.equal(batchInterval(1000), 100);
    assert.equal(batchInterval(3000), 150);
    assert.equal(batchInterval(10_000), 250);
    assert.equal(batchInterval(600_000), 250);
  });

  it('with both windows at 0, tells everyone at once', async () => {
    const sessions = new FakeSessions();
    sessions.add(50);
    const { d, stopped } = drainer(sessions, 0, 0);
    const started = Date.now();
    const done = d.run();
    assert.equal(d.draining, true, 'draining from the first moment');
    await done;
    assert.ok(Date.now() - started < 50);
    assert.equal(stopped.length, 1);
    assert.equal(sessions.size, 0);
    assert.equal(sessions.told.length, 50);
    for (const { reason } of sessions.told) {
      assert.equal(reason.code, 'shutdown');
      assert.equal(reason.message, 'server shutting down');
      assert.ok(reason.reconnectAfterMs! >= 0 && reason.reconnectAfterMs! <= 1000);
    }
    assert.equal(d.state, 'drained');
  });

  it('keeps serving for the ready window, then refuses and spreads the disconnects over the drain window', async () => {
    const sessions = new FakeSessions();
    sessions.add(100);
    const { d, stopped } = drainer(sessions, 1, 1);
    const started = Date.now();
    const done = d.run();
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(d.state, 'unready');
    assert.deepEqual([stopped.length, sessions.told.length], [0, 0], 'nothing refused or closed in the ready window');
    sessions.add(10); // still accepted in the ready window: drained with the rest
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(d.state, 'disconnecting');
    sessions.add(5); // a handshake that finished after the listeners closed
    await done;
    const took = Date.now() - started;
    assert.ok(took >= 2000 && took < 2300, `both windows (${took} ms)`);
    assert.ok(stopped[0]! - started >= 1000 && stopped[0]! - started < 1100);
    assert.equal(sessions.told.length, 115);
    const times = sessions.told.map((x) => x.at - stopped[0]!);
    assert.ok(times[0]! < 50, 'the first batch at the start of the window');
    assert.ok(times.at(-1)! >= 850 && times.at(-1)! < 1000, `the last one interval before the end (${times.at(-1)} ms)`);
    // 10 batches, 100 ms apart, of 11 or 12 sessions each.
    const perBatch = new Map<number, number>();
    for (const t of times) perBatch.set(Math.round(t / 100), (perBatch.get(Math.round(t / 100)) ?? 0) + 1);
    assert.equal(perBatch.size, 10, JSON.stringify([...perBatch]));
    for (const count of perBatch.values()) assert.ok(count >= 10 && count <= 13, JSON.stringify([...perBatch]));
    for (const { reason } of sessions.told) assert.ok(reason.reconnectAfterMs! >= 0 && reason.reconnectAfterMs! <= 1000);
  });

  it('tells everyone left at once when hurried', async () => {
    const sessions = new FakeSessions();
    sessions.add(40);
    const { d } = drainer(sessions, 2, 10);
    const started = Date.now();
    const done = d.run();
    await new Promise((r) => setTimeout(r, 100));
    d.hurry();
    await done;
    assert.ok(Date.now() - started < 300);
    assert.equal(sessions.told.length, 40);
  });

  it('runs once however often it is asked', async () => {
    const sessions = new FakeSessions();
    sessions.add(3);
    const { d, stopped } = drainer(sessions, 0, 0);
    assert.equal(d.run(), d.run());
    await d.run();
    assert.equal(stopped.length, 1);
    assert.equal(sessions.told.length, 3);
  });
});
