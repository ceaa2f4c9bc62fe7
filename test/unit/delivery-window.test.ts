/**
 * The delivery policy without a server: fake messages (bytes and a settle
 * that records its outcome) offered to a window, held, cut and drained.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Outcome } from '../../src/core/consumer.js';
import { DeliveryWindow, type HeldMessage, type HeldQueue } from '../../src/core/delivery-window.js';
import { newSessionId } from '../../src/core/session.js';

interface Fake extends HeldMessage {
  name: string;
  outcome?: Outcome;
}

function fake(name: string, bytes = 100): Fake {
  const m: Fake = { name, bytes, delivery: { redelivered: false, settle: (o) => (m.outcome ??= o) } };
  return m;
}

const window = (maxHeldBytes = 10_000, maxBufferedBytes = 1000): DeliveryWindow => new DeliveryWindow({ maxHeldBytes, maxBufferedBytes });
const names = (q: HeldQueue<Fake>): string[] => [...q].map((m) => m.name);

describe('DeliveryWindow: send now or hold', () => {
  it('sends at once when there is room and nothing waits', () => {
    const w = window();
    const q = w.queue<Fake>(10);
    assert.equal(w.offer(q, fake('a'), true), 'send');
    assert.equal(q.length, 0);
    assert.equal(w.budget.heldBytes, 0);
  });

  it('holds when there is no room, and counts the held bytes', () => {
    const w = window();
    const q = w.queue<Fake>(10);
    assert.equal(w.offer(q, fake('a', 300), false), 'held');
    assert.deepEqual(names(q), ['a']);
    assert.equal(w.budget.heldBytes, 300);
  });

  it('holds a message behind held ones even when there is room, so order is kept', () => {
    const w = window();
    const q = w.queue<Fake>(10);
    w.offer(q, fake('a'), false);
    assert.equal(w.offer(q, fake('b'), true), 'held');
    assert.deepEqual(names(q), ['a', 'b']);
  });
});

describe('DeliveryWindow: bounds and the slow-consumer cut', () => {
  it('cuts when held plus in-flight bytes pass the budget, with the reason the budget gives', () => {
    const w = window(1000);
    const q = w.queue<Fake>(100);
    w.budget.fly(600);
    assert.equal(w.offer(q, fake('a', 300), false), 'held');
    const cut = w.offer(q, fake('b', 300), false);
    assert.ok(typeof cut === 'object' && cut.over === 'bytes');
    assert.match(cut.reason, /slow consumer: 1200 bytes .*limit is 1000, maxHeldBytesPerConnection/);
    // The message that crossed the bound is held, so closing the connection gives it back.
    assert.deepEqual(names(q), ['a', 'b']);
  });

  it('cuts when one queue holds more messages than its bound', () => {
    const w = window();
    const q = w.queue<Fake>(2);
    assert.equal(w.offer(q, fake('a', 1), false), 'held');
    assert.equal(w.offer(q, fake('b', 1), false), 'held');
    assert.deepEqual(w.offer(q, fake('c', 1), false), { over: 'messages', held: 3, limit: 2 });
  });

  it('checks bytes before the message count', () => {
    const w = window(200);
    const q = w.queue<Fake>(0);
    const cut = w.offer(q, fake('a', 500), false);
    assert.ok(typeof cut === 'object' && cut.over === 'bytes');
  });

  it('bounds each queue on its own, and the bytes over the whole connection', () => {
    const w = window(1000);
    const a = w.queue<Fake>(1);
    const b = w.queue<Fake>(1);
    assert.equal(w.offer(a, fake('a1', 400), false), 'held');
    assert.equal(w.offer(b, fake('b1', 400), false), 'held');
    assert.equal(w.budget.heldBytes, 800);
    const cut = w.offer(b, fake('b2', 400), false);
    assert.ok(typeof cut === 'object' && cut.over === 'bytes');
  });

  it('tells a writable socket from a backed-up one by its buffered bytes', () => {
    const w = window(10_000, 1000);
    assert.equal(w.writable(499), true);
    assert.equal(w.writable(500), false);
    assert.equal(w.backedUp(1000), false);
    assert.equal(w.backedUp(1001), true);
    assert.match(w.describeBacklog(), /more than 1000 bytes are waiting to be read by this client/);
  });

  it('tells onCut of the first cut it answers, whichever kind, and of no other answer', () => {
    for (const provoke of [
      (w: DeliveryWindow, q: HeldQueue<Fake>) => w.offer(q, fake('big', 5000), false),
      (w: DeliveryWindow, q: HeldQueue<Fake>) => (w.offer(q, fake('a'), false), w.offer(q, fake('b'), false), w.offer(q, fake('c'), false)),
      (w: DeliveryWindow) => w.backedUp(1001),
      (w: DeliveryWindow) => w.holdAside(5000),
    ]) {
      let cuts = 0;
      const w = new DeliveryWindow({ maxHeldBytes: 1000, maxBufferedBytes: 1000, onCut: () => cuts++ });
      const q = w.queue<Fake>(2);
      assert.equal(w.backedUp(1000), false);
      assert.equal(w.holdAside(10), true);
      assert.equal(w.offer(q, fake('first'), true), 'send');
      assert.equal(cuts, 0, 'nothing over a bound yet');
      provoke(w, q);
      assert.equal(cuts, 1, String(provoke));
      // Answers that still say "cut" before the connection has closed count no more.
      assert.equal(w.backedUp(5000), true);
      assert.equal(w.holdAside(5000), false);
      assert.equal(cuts, 1);
    }
  });
});

describe('DeliveryWindow: draining when room opens', () => {
  it('sends held messages oldest first while there is room, and stops when there is none', () => {
    const w = window();
    const q = w.queue<Fake>(10);
    for (const n of ['a', 'b', 'c']) w.offer(q, fake(n), false);
    const sent: string[] = [];
    let room = 2;
    const n = w.drain([q], () => room > 0, (m) => {
      room--;
      sent.push(m.name);
    });
    assert.equal(n, 2);
    assert.deepEqual(sent, ['a', 'b']);
    assert.deepEqual(names(q), ['c']);
    assert.equal(w.budget.heldBytes, 100);
  });

  it('takes a message out of the held bytes before sending it, so the sender may count it in flight', () => {
    const w = window();
    const q = w.queue<Fake>(10);
    w.offer(q, fake('a', 250), false);
    w.drain([q], () => true, (m) => {
      assert.equal(w.budget.heldBytes, 0);
      w.budget.fly(m.bytes);
    });
    assert.equal(w.budget.inflightBytes, 250);
  });

  it('goes oldest first across queues, passing over a queue without room', () => {
    const w = window();
    const a = w.queue<Fake>(10);
    const b = w.queue<Fake>(10);
    w.offer(a, fake('a1'), false);
    w.offer(b, fake('b1'), false);
    w.offer(a, fake('a2'), false);
    w.offer(b, fake('b2'), false);
    w.offer(a, fake('a3'), false);
    const sent: string[] = [];
    let roomA = 2;
    w.drain([a, b], (q) => (q === a ? roomA > 0 : true), (m, q) => {
      if (q === a) roomA--;
      sent.push(m.name);
    });
    assert.deepEqual(sent, ['a1', 'b1', 'a2', 'b2']);
    assert.deepEqual(names(a), ['a3']);
  });

  it('accepts any iterable of queues (a Map of subscriptions)', () => {
    const w = window();
    const subs = new Map([['x', w.queue<Fake>(10)], ['y', w.queue<Fake>(10)]]);
    w.offer(subs.get('y')!, fake('y1'), false);
    w.offer(subs.get('x')!, fake('x1'), false);
    const sent: string[] = [];
    w.drain(subs.values(), () => true, (m) => sent.push(m.name));
    assert.deepEqual(sent, ['y1', 'x1']);
  });

  it('stops when sending closes the connection and its queues are released', () => {
    const w = window();
    const q = w.queue<Fake>(10);
    for (const n of ['a', 'b', 'c']) w.offer(q, fake(n), false);
    const sent: string[] = [];
    w.drain([q], () => true, (m) => {
      sent.push(m.name);
      w.release(q);
    });
    assert.deepEqual(sent, ['a']);
  });
});

describe('DeliveryWindow: release', () => {
  it('gives every held message back to the broker and forgets its bytes', () => {
    const w = window();
    const q = w.queue<Fake>(10);
    const held = [fake('a', 10), fake('b', 20)];
    for (const m of held) w.offer(q, m, false);
    w.release(q);
    assert.deepEqual(held.map((m) => m.outcome), ['requeue', 'requeue']);
    assert.equal(q.length, 0);
    assert.equal(w.budget.heldBytes, 0);
  });

  it('takeAll hands the held messages over, oldest first and unsettled, and forgets their bytes', () => {
    const w = window();
    const q = w.queue<Fake>(10);
    for (const n of ['a', 'b']) w.offer(q, fake(n, 10), false);
    const taken = w.takeAll(q);
    assert.deepEqual(taken.map((m) => m.name), ['a', 'b']);
    assert.deepEqual(taken.map((m) => m.outcome), [undefined, undefined]);
    assert.equal(q.length, 0);
    assert.equal(w.budget.heldBytes, 0);
  });

  it('clear forgets in-flight and held bytes', () => {
    const w = window();
    w.budget.fly(500);
    w.offer(w.queue<Fake>(10), fake('a'), false);
    w.clear();
    assert.equal(w.budget.used, 0);
  });
});

describe('newSessionId', () => {
  it('names the protocol and never repeats', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newSessionId('stomp')));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.match(id, /^stomp-[0-9a-z]+-[0-9a-z]+$/);
    assert.match(newSessionId('json'), /^json-/);
  });
});
