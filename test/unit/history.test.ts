/** The overview's history (src/core/history.ts): the ring, the rates it samples, and downsampling. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HISTORY_CAPACITY, MetricHistory, SampleRing } from '../../src/core/history.js';
import { Metrics } from '../../src/core/metrics.js';

describe('SampleRing', () => {
  it('keeps the newest `capacity` samples, oldest first, and finds them from a time on', () => {
    const ring = new SampleRing(3, 2);
    for (let i = 1; i <= 5; i++) ring.push(i * 10, [i, -i]);
    assert.equal(ring.size, 3);
    const seen: [number, number, number][] = [];
    ring.forEachFrom(0, (t, slot) => seen.push([t, ring.value(0, slot), ring.value(1, slot)]));
    assert.deepEqual(seen, [[30, 3, -3], [40, 4, -4], [50, 5, -5]]);
    const later: number[] = [];
    ring.forEachFrom(45, (t) => later.push(t));
    assert.deepEqual(later, [50]);
  });
});

describe('MetricHistory', () => {
  /** A history over real Metrics with a clock the test moves. */
  function setup(sampleMs = 10_000) {
    const metrics = new Metrics();
    let now = 1_000_000_000_000;
    const history = new MetricHistory({ metrics }, sampleMs, () => now);
    return { metrics, history, advance: (ms: number) => (now += ms), now: () => now };
  }

  it('samples message rates, connections per protocol, cuts and store latency between two readings', async () => {
    const { metrics, history, advance } = setup();
    await history.sample(); // the baseline: no point yet
    assert.deepEqual(history.query('15m').t, []);
    // What the connections count, as they count it (plain tallies read when the metrics are collected).
    metrics.messagesInOf['mqtt-tcp'].n += 50;
    metrics.messagesInOf['stomp-ws'].n += 50;
    metrics.messagesOutOf['json-ws'].n += 30;
    metrics.connectionsOf['stomp-tcp'].n += 2;
    metrics.connectionsOf['mqtt-ws'].inc();
    metrics.protocolErrors.inc({ protocol: 'stomp', reason: 'slow_consumer' }, 2);
    metrics.protocolErrors.inc({ protocol: 'mqtt', reason: 'auth' });
    metrics.storeSeconds.observe({ op: 'insertMessage' }, 0.002);
    metrics.storeSeconds.observe({ op: 'getUserById' }, 0.004);
    advance(10_000);
    await history.sample();
    const h = history.query('15m');
    assert.equal(h.t.length, 1);
    assert.equal(h.bucketSeconds, 10, '15 min fits in raw samples');
    const v = (key: string) => h.values[key]![0];
    assert.equal(v('msg.in'), 10, '100 messages in 10 s');
    assert.equal(v('msg.out'), 3);
    assert.equal(v('conn.stomp-tcp'), 2);
    assert.equal(v('conn.mqtt-ws'), 1);
    assert.equal(v('conn.json-ws'), 0);
    assert.equal(v('cut.slow'), 12, '2 cuts in 10 s is 12 a minute');
    assert.equal(v('err.protocol'), 6);
    assert.equal(v('store.avg'), 3, 'two calls averaging 3 ms');
    assert.ok((v('mem.rss') ?? 0) > 1 && (v('mem.heap') ?? 0) > 1, 'memory in MiB');
    assert.ok(h.series.every((s) => s.label && s.unit), 'every series has a label and a unit');
    assert.equal(h.series.some((s) => s.key === 'drop.bus'), false, 'no bus on a single node');
    // Nothing happened in the next interval: rates fall to 0, and a store with no calls has no latency to show.
    advance(10_000);
    await history.sample();
    const next = history.query('15m');
    assert.deepEqual([next.values['msg.in']![1], next.values['store.avg']![1], next.values['conn.stomp-tcp']![1]], [0, null, 2]);
  });

  it('downsamples a day to at most 360 buckets aligned on their width, taking peaks where asked', async () => {
    const { history, advance, now } = setup();
    await history.sample();
    // 24 h of samples every 10 s, one more than the ring holds.
    for (let i = 0; i <= HISTORY_CAPACITY; i++) {
      advance(10_000);
      await history.sample();
    }
    const day = history.query('24h');
    assert.equal(day.bucketSeconds, 240);
    assert.ok(day.t.length <= 361 && day.t.length >= 359, `${day.t.length} points`);
    assert.ok(day.t.every((t) => t % 240_000 === 0), 'bucket starts are multiples of the width');
    assert.ok(day.t.every((t, i) => i === 0 || t > day.t[i - 1]!), 'oldest first');
    const hour = history.query('1h');
    assert.equal(hour.bucketSeconds, 10);
    assert.equal(hour.t.length, 360);
    assert.ok(hour.t[0]! >= now() - 3_600_000);
    // Appending: from a point on, only that point and newer (the last bucket may have grown).
    const lastBucket = day.t[day.t.length - 1]!;
    const tail = history.query('24h', lastBucket);
    assert.deepEqual(tail.t, [lastBucket]);
    const rawTail = history.query('15m', hour.t[hour.t.length - 2]!);
    assert.equal(rawTail.t.length, 2);
    const loop = day.series.find((s) => s.key === 'loop.max');
    assert.equal(loop?.agg, 'max', 'the worst event-loop delay is a peak, not averaged away');
  });

  it('adds the bus drops in a cluster', async () => {
    const metrics = new Metrics();
    let dropped = 0;
    let now = 0;
    const history = new MetricHistory({ metrics, busDropped: () => dropped }, 10_000, () => now);
    await history.sample();
    dropped = 5;
    now += 10_000;
    await history.sample();
    assert.equal(history.query('15m').values['drop.bus']![0], 30);
  });
});
