import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { Queues, type QueueClaims } from '../../src/core/queues.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { eventually, FakeConsumer, FakeLink, queueMessage, recordingLog } from './broker-fakes.js';

/**
 * The queue engine over the real SQLite store in a temporary directory (the
 * store's claim semantics are what the engine relies on), with a gate that
 * lets a test hold an `enqueue` to act while it is being written.
 */
class GatedStore implements QueueClaims {
  /** Claims fail while set (the store is down). */
  claimsFail = false;
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  constructor(readonly inner: SqliteStore) {}
  /** The next enqueues wait until `release()`. */
  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }
  release(): void {
    this.gate = undefined;
    this.open?.();
  }
  async enqueue(...args: Parameters<QueueClaims['enqueue']>): Promise<string> {
    if (this.gate) await this.gate;
    return this.inner.enqueue(...args);
  }
  claimQueue(...args: Parameters<QueueClaims['claimQueue']>): ReturnType<QueueClaims['claimQueue']> {
    if (this.claimsFail) return Promise.reject(new Error('store down'));
    return this.inner.claimQueue(...args);
  }
  releaseQueued(...args: Parameters<QueueClaims['releaseQueued']>): ReturnType<QueueClaims['releaseQueued']> {
    return this.inner.releaseQueued(...args);
  }
  dequeue(...args: Parameters<QueueClaims['dequeue']>): ReturnType<QueueClaims['dequeue']> {
    return this.inner.dequeue(...args);
  }
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let sqlite: SqliteStore;
let store: GatedStore;
let records: { level: number; msg: string }[];
let engine: Queues;

beforeEach(() => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-queues-'));
  dirs.push(dir);
  sqlite = new SqliteStore({ dataDir: dir });
  store = new GatedStore(sqlite);
  const recording = recordingLog();
  records = recording.records;
  engine = new Queues(store, recording.log, { queueMemoryMessages: 10_000 }, 'local');
});

afterEach(async () => {
  await engine.releaseAll();
  await sqlite.close();
});

/** Bodies of the messages no node has claimed (claims them for a probe owner). */
async function unclaimed(name = 'jobs'): Promise<string[]> {
  return (await sqlite.claimQueue(name, 'probe', 100)).map((r) => r.body.toString());
}

async function publish(...bodies: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const b of bodies) ids.push(await engine.publish(queueMessage('jobs', b)));
  return ids;
}

describe('queues', () => {
  it('keep a message published with no consumer in the store and hand it to the first subscriber', async () => {
    const [id] = await publish('m1');
    const c = new FakeConsumer('c');
    engine.subscribe('jobs', c);
    await eventually(() => c.received.length === 1);
    const { msg, delivery } = c.received[0]!;
    assert.equal(msg.id, 'q' + id);
    assert.equal(msg.body.toString(), 'm1');
    assert.deepEqual(msg.headers, [['h', 'm1']]);
    assert.equal(msg.contentType, 'text/plain');
    assert.deepEqual(msg.target, { kind: 'queue', name: 'jobs' });
    assert.equal(delivery.redelivered, false);
  });

  it('hand each message to one consumer, round-robin, in order', async () => {
    const cs = ['a', 'b', 'c'].map((id) => new FakeConsumer(id));
    for (const c of cs) engine.subscribe('jobs', c);
    const ids = await publish('m1', 'm2', 'm3', 'm4', 'm5', 'm6');
    assert.deepEqual(cs.map((c) => c.bodies()), [['m1', 'm4'], ['m2', 'm5'], ['m3', 'm6']]);
    assert.equal(cs[0]!.received[0]!.msg.id, 'q' + ids[0], 'a published message carries its store id');
    assert.deepEqual(await unclaimed(), [], 'stored already claimed by this node');
    assert.deepEqual(engine.stats('jobs'), { ready: 0, inflight: 6, consumers: 3 });
  });

  it('pass over a consumer without room, and feed it again when it says it is ready', async () => {
    const a = new FakeConsumer('a');
    const b = new FakeConsumer('b');
    a.window = 1;
    b.window = 1;
    engine.subscribe('jobs', a);
    engine.subscribe('jobs', b);
    await publish('m1', 'm2', 'm3', 'm4');
    assert.deepEqual([a.bodies(), b.bodies()], [['m1'], ['m2']]);
    b.ack();
    engine.consumerReady(b);
    await eventually(() => b.received.length === 2);
    assert.deepEqual(b.bodies(), ['m2', 'm3']);
    a.ack();
    engine.consumerReady(a);
    await eventually(() => a.received.length === 2);
    assert.deepEqual(a.bodies(), ['m1', 'm4']);
    assert.deepEqual(engine.stats('jobs'), { ready: 0, inflight: 2, consumers: 2 });
  });

  it('remove an acknowledged message from the store', async () => {
    const c = new FakeConsumer('c');
    engine.subscribe('jobs', c);
    await publish('m1', 'm2');
    c.ack('m1');
    engine.unsubscribe('jobs', c);
    c.requeueAll();
    await engine.releaseAll(); // waits for the hand-back of m2
    assert.deepEqual(await unclaimed(), ['m2']);
  });

  it('give a NACKed message to the next consumer, marked redelivered', async () => {
    const a = new FakeConsumer('a');
    const b = new FakeConsumer('b');
    engine.subscribe('jobs', a);
    engine.subscribe('jobs', b);
    await publish('m1');
    a.nack();
    await eventually(() => b.received.length === 1);
    assert.equal(b.received[0]!.msg.body.toString(), 'm1');
    assert.equal(b.received[0]!.delivery.redelivered, true);
    b.nack();
    await eventually(() => a.received.length === 2);
    assert.deepEqual(a.received.map((r) => r.delivery.redelivered), [false, true]);
    a.ack();
    assert.deepEqual(engine.stats('jobs'), { ready: 0, inflight: 0, consumers: 2 });
  });

  it('ignore a second settle of the same delivery', async () => {
    const a = new FakeConsumer('a');
    engine.subscribe('jobs', a);
    await publish('m1');
    const { delivery } = a.received[0]!;
    delivery.settle!('ack');
    delivery.settle!('nack');
    assert.deepEqual(engine.stats('jobs'), { ready: 0, inflight: 0, consumers: 1 });
  });

  it('hand back to the store, marked redelivered, what a consumer left unacknowledged when no other is here', async () => {
    const old = new FakeConsumer('old');
    engine.subscribe('jobs', old);
    await publish('m1');
    engine.unsubscribe('jobs', old);
    assert.deepEqual(engine.stats('jobs'), { ready: 0, inflight: 1, consumers: 0 }, 'kept while a message is out');
    old.requeueAll();
    assert.equal(engine.stats('jobs'), undefined);
    await engine.releaseAll();
    const next = new FakeConsumer('next');
    engine.subscribe('jobs', next);
    await eventually(() => next.received.length > 0);
    assert.equal(next.received[0]!.msg.body.toString(), 'm1');
    assert.equal(next.received[0]!.delivery.redelivered, true);
  });

  it('hand back what this node claimed but had not handed out when the last consumer leaves', async () => {
    await publish('m1', 'm2', 'm3');
    const c = new FakeConsumer('c');
    c.window = 1;
    engine.subscribe('jobs', c);
    await eventually(() => c.received.length === 1);
    assert.deepEqual(engine.stats('jobs'), { ready: 2, inflight: 1, consumers: 1 });
    engine.unsubscribe('jobs', c);
    assert.deepEqual(engine.stats('jobs'), { ready: 0, inflight: 1, consumers: 0 });
    await engine.releaseAll();
    assert.deepEqual(await unclaimed(), ['m2', 'm3']);
  });

  it('hand back every claimed message on releaseAll, and wait for the store', async () => {
    await publish('m1', 'm2', 'm3');
    const c = new FakeConsumer('c');
    c.window = 1;
    engine.subscribe('jobs', c);
    await eventually(() => c.received.length === 1);
    await engine.releaseAll();
    assert.deepEqual(await unclaimed(), ['m2', 'm3']);
  });

  it('hand back a message stored claimed while the last consumer left with another one out', async () => {
    const c = new FakeConsumer('c');
    engine.subscribe('jobs', c);
    await publish('m1');
    store.hold();
    const writing = engine.publish(queueMessage('jobs', 'm2')); // c has room: m2 is written claimed by this node
    engine.unsubscribe('jobs', c); // m1 is still out, so the queue stays
    store.release();
    await writing;
    c.requeueAll();
    await engine.releaseAll();
    assert.deepEqual(await unclaimed(), ['m1', 'm2'], 'both are back for any consumer');
  });

  it('take a message another node stored when poked', async () => {
    const c = new FakeConsumer('c');
    engine.subscribe('jobs', c);
    await eventually(() => engine.stats('jobs') !== undefined);
    await sqlite.enqueue({ queue: 'jobs', body: Buffer.from('from elsewhere'), contentType: null, headers: [], createdAt: Date.now() });
    engine.poked('jobs');
    engine.poked('nobody here');
    await eventually(() => c.received.length === 1);
    assert.deepEqual(c.bodies(), ['from elsewhere']);
  });

  it('count a consumer subscribed twice to a queue once', async () => {
    const a = new FakeConsumer('a');
    const b = new FakeConsumer('b');
    engine.subscribe('jobs', a);
    engine.subscribe('jobs', a);
    engine.subscribe('jobs', b);
    await publish('m1', 'm2', 'm3');
    assert.deepEqual([a.bodies(), b.bodies()], [['m1', 'm3'], ['m2']]);
    engine.unsubscribe('jobs', a);
    await publish('m4');
    assert.deepEqual([a.bodies(), b.bodies()], [['m1', 'm3'], ['m2', 'm4']]);
    assert.deepEqual(engine.stats('jobs')?.consumers, 1);
  });

  it('log a failed claim once per outage and claim again on the next poke', async () => {
    await publish('m1');
    store.claimsFail = true;
    const c = new FakeConsumer('c');
    engine.subscribe('jobs', c);
    const failed = (r: (typeof records)[number]): boolean => r.msg === 'queue claims and removals in the store failed; trying again at its next run';
    await eventually(() => records.some(failed));
    engine.poked('jobs');
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(records.filter(failed).length, 1, 'logged once while the store is away');
    assert.deepEqual(c.bodies(), []);
    store.claimsFail = false;
    engine.poked('jobs');
    await eventually(() => c.received.length === 1);
  });

  it('forget a queue once its last consumer left and nothing is out', async () => {
    const c = new FakeConsumer('c');
    engine.subscribe('jobs', c);
    await publish('m1');
    c.ack();
    engine.unsubscribe('jobs', c);
    assert.equal(engine.stats('jobs'), undefined);
    engine.unsubscribe('jobs', c);
    engine.consumerReady(c);
  });
});

describe('queues in a cluster', () => {
  it("claim under the link's owner id, a few per ready consumer, and tell the link of interest", async () => {
    const link = new FakeLink('node-a');
    engine.setClusterLink(link);
    assert.equal(engine.nodeId, 'node-a#1');
    await publish(...Array.from({ length: 10 }, (_, i) => `m${i + 1}`));
    assert.deepEqual(link.pokes, Array(10).fill('jobs'), 'stored unclaimed: other nodes are told');
    const c = new FakeConsumer('c');
    c.window = 1;
    engine.subscribe('jobs', c);
    await eventually(() => c.received.length === 1);
    assert.deepEqual(engine.stats('jobs'), { ready: 3, inflight: 1, consumers: 1 });
    assert.equal((await unclaimed()).length, 6);
    engine.unsubscribe('jobs', c);
    assert.deepEqual(link.interests, ['+queue:jobs', '-queue:jobs']);
  });

  it("claim nothing while this node's lease is not surely its own, and look again on recheck", async () => {
    const link = new FakeLink();
    link.leased = false;
    engine.setClusterLink(link);
    const c = new FakeConsumer('c');
    engine.subscribe('jobs', c);
    await publish('m1');
    assert.deepEqual(link.pokes, ['jobs']);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(c.bodies(), []);
    link.leased = true;
    engine.recheck();
    await eventually(() => c.received.length === 1);
    assert.deepEqual(c.bodies(), ['m1']);
  });

  it('tell the other nodes when claims go back to the store', async () => {
    const link = new FakeLink();
    engine.setClusterLink(link);
    const c = new FakeConsumer('c');
    engine.subscribe('jobs', c);
    await publish('m1');
    assert.deepEqual(link.pokes, []);
    engine.unsubscribe('jobs', c);
    c.requeueAll();
    await eventually(() => link.pokes.length === 1);
    assert.deepEqual(link.pokes, ['jobs']);
  });
});
