/**
 * Retained messages kept in a tree by topic level: a filter finds exactly
 * what the plain topic match would find (checked against it on random
 * topics), without testing every retained topic; their total size is capped.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { systemClock } from '../../src/clock.js';
import { topicMatches } from '../../src/core/destination.js';
import { createMessage } from '../../src/core/message.js';
import { RetainedMessages } from '../../src/protocols/mqtt/retained.js';
import type { Store } from '../../src/store/store.js';

const store = { listRetained: async () => [], setRetained: async () => undefined } as unknown as Store;
const msg = (topic: string, body = topic) => createMessage({ target: { kind: 'topic', topic }, body: Buffer.from(body) });

/** A small deterministic generator, so a failure can be replayed. */
function lcg(seed: number): () => number {
  let x = seed;
  return () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
}

describe('retained messages', () => {
  it('match filters exactly as topicMatches does, $ topics included, over 2,000 random topics and 500 filters', () => {
    const r = new RetainedMessages({ store, clock: systemClock });
    const rand = lcg(7);
    const words = ['a', 'b', 'c', '$SYS', 'dev', ''];
    const pick = () => words[Math.floor(rand() * words.length)]!;
    const topics = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const n = 1 + Math.floor(rand() * 4);
      const t = Array.from({ length: n }, (_, j) => (j > 0 && pick() === '$SYS' ? 'x' : pick())).join('/');
      if (t === '') continue;
      topics.add(t);
      r.apply(t, msg(t), 0);
    }
    for (let i = 0; i < 500; i++) {
      const n = 1 + Math.floor(rand() * 4);
      const parts = Array.from({ length: n }, () => (rand() < 0.3 ? '+' : pick()));
      if (rand() < 0.3) parts.push('#');
      const filter = parts.join('/');
      const expected = [...topics].filter((t) => topicMatches(filter, t)).sort();
      const got = [...r.matching(filter)].map((x) => (x.msg.target as { topic: string }).topic).sort();
      assert.deepEqual(got, expected, `filter ${filter}`);
    }
  });

  it('clearing a topic removes it, and an empty branch is pruned', () => {
    const r = new RetainedMessages({ store, clock: systemClock });
    r.apply('a/b/c', msg('a/b/c'), 0);
    r.apply('a/b/c', msg('a/b/c', ''), 0);
    assert.deepEqual([...r.matching('#')], []);
    assert.deepEqual([...r.matching('a/#')], []);
  });

  it('caps their total size: past mqttRetainedMaxBytes a new one is refused, replacing or clearing is not', async () => {
    const r = new RetainedMessages({ store, clock: systemClock }, 100);
    await r.set('t/1', msg('t/1', 'x'.repeat(60)), 0, {});
    assert.equal(r.refusal('t/2', msg('t/2', 'y'.repeat(30))), undefined);
    await r.set('t/2', msg('t/2', 'y'.repeat(30)), 0, {});
    assert.match(r.refusal('t/3', msg('t/3', 'z'.repeat(20))) ?? '', /110 bytes; the limit is 100 \(mqttRetainedMaxBytes\)/);
    assert.equal(r.refusal('t/1', msg('t/1', 'x'.repeat(70))), undefined, 'replacing t/1 keeps the total at 100');
    assert.equal(r.refusal('t/1', msg('t/1', '')), undefined, 'clearing is always allowed');
  });
});
