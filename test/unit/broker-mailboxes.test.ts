import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CoreMessage } from '../../src/core/message.js';
import { UserMailboxes, type DurableMailbox, type MailboxLimits } from '../../src/core/user-mailboxes.js';
import { FakeConsumer, FakeLink, principalOf, recordingLog, settleDown, userMessage } from './broker-fakes.js';

function mailboxes(limits: Partial<MailboxLimits> = {}): { engine: UserMailboxes; records: { level: number; msg: string }[] } {
  const { log, records } = recordingLog();
  return { engine: new UserMailboxes(log, { parkedPerUser: 100, maxRedeliveries: 10, ...limits }), records };
}

/** A session of `userId`. */
function session(id: string, userId = 'alice'): FakeConsumer {
  return new FakeConsumer(id, principalOf(userId));
}

/** A durable mailbox whose stored backlog the test hands out when it chooses. */
class FakeDurable implements DurableMailbox {
  readonly acks: string[] = [];
  private readonly waiting: ((msgs: CoreMessage[]) => void)[] = [];
  private readonly failing: ((err: Error) => void)[] = [];
  pending(): Promise<CoreMessage[]> {
    return new Promise((resolve, reject) => {
      this.waiting.push(resolve);
      this.failing.push(reject);
    });
  }
  acked(userId: string, msg: CoreMessage): void {
    this.acks.push(`${userId}:${msg.recordId}`);
  }
  answer(msgs: CoreMessage[]): void {
    this.failing.shift();
    this.waiting.shift()!(msgs);
  }
  fail(err: Error): void {
    this.waiting.shift();
    this.failing.shift()!(err);
  }
}

describe('user mailboxes', () => {
  it("give every subscribed session of the user its own copy, and nobody else's", () => {
    const { engine } = mailboxes();
    const phone = session('phone');
    const laptop = session('laptop');
    const otherName = session('other name');
    const bob = session('bob', 'bob');
    engine.subscribe('alice', 'strm', phone);
    engine.subscribe('alice', 'strm', laptop);
    engine.subscribe('alice', 'errors', otherName);
    engine.subscribe('bob', 'strm', bob);
    assert.equal(engine.deliver(userMessage('alice', 'strm', 'hi')), 2);
    assert.equal(engine.deliver(userMessage('carol', 'strm', 'nobody')), 0);
    assert.deepEqual(phone.bodies(), ['hi']);
    assert.deepEqual(laptop.bodies(), ['hi']);
    assert.deepEqual(otherName.bodies(), []);
    assert.deepEqual(bob.bodies(), []);
    assert.notEqual(phone.received[0]!.delivery, laptop.received[0]!.delivery, 'each copy is settled apart');
    assert.equal(phone.received[0]!.delivery.redelivered, false);
  });

  it('stop delivering to a session that unsubscribed; subscribing twice counts once', () => {
    const { engine } = mailboxes();
    const link = new FakeLink();
    engine.setClusterLink(link);
    const s = session('s');
    engine.subscribe('alice', 'strm', s);
    engine.subscribe('alice', 'strm', s);
    assert.equal(engine.deliver(userMessage('alice', 'strm', 'one')), 1);
    engine.unsubscribe('alice', 'strm', s);
    engine.unsubscribe('alice', 'strm', s);
    assert.equal(engine.deliver(userMessage('alice', 'strm', 'two')), 0);
    assert.deepEqual(s.bodies(), ['one']);
    assert.deepEqual(link.interests, ['+user:alice', '-user:alice']);
  });

  it('tell the cluster link when the first session of a user subscribes and the last leaves', () => {
    const { engine } = mailboxes();
    const link = new FakeLink();
    engine.setClusterLink(link);
    const a = session('a');
    const b = session('b');
    engine.subscribe('alice', 'strm', a);
    engine.subscribe('alice', 'errors', b);
    engine.unsubscribe('alice', 'strm', a);
    assert.deepEqual(link.interests, ['+user:alice']);
    engine.unsubscribe('alice', 'errors', b);
    assert.deepEqual(link.interests, ['+user:alice', '-user:alice']);
  });

  it('give a NACKed message to the same session again, marked redelivered, until maxRedeliveries', () => {
    const { engine, records } = mailboxes({ maxRedeliveries: 3 });
    const s = session('s');
    engine.subscribe('alice', 'strm', s);
    engine.deliver(userMessage('alice', 'strm', 'poison'));
    s.nack();
    s.nack();
    assert.deepEqual(s.received.map((r) => r.delivery.redelivered), [false, true, true]);
    s.nack();
    assert.equal(s.received.length, 3, 'dropped after three deliveries');
    assert.equal(s.unsettled.length, 0);
    assert.ok(records.some((r) => r.msg === 'user message dropped after too many redeliveries'));
  });

  it('heed only the first settle of a copy', () => {
    const { engine } = mailboxes();
    const s = session('s');
    engine.subscribe('alice', 'strm', s);
    engine.deliver(userMessage('alice', 'strm', 'x'));
    const { delivery } = s.received[0]!;
    delivery.settle!('ack');
    engine.unsubscribe('alice', 'strm', s);
    delivery.settle!('requeue');
    delivery.settle!('nack');
    const next = session('next');
    engine.subscribe('alice', 'strm', next);
    assert.deepEqual(next.bodies(), [], 'acknowledged once is consumed');
  });

  it('do nothing more on ack of a plain message', () => {
    const { engine } = mailboxes();
    const s = session('s');
    engine.subscribe('alice', 'strm', s);
    engine.deliver(userMessage('alice', 'strm', 'x'));
    s.ack();
    engine.unsubscribe('alice', 'strm', s);
    const next = session('next');
    engine.subscribe('alice', 'strm', next);
    assert.deepEqual(next.bodies(), []);
  });

  it("park what a departed session left unacknowledged, for the user's next subscriber of the name", () => {
    const { engine } = mailboxes();
    const old = session('old');
    engine.subscribe('alice', 'strm', old);
    engine.deliver(userMessage('alice', 'strm', 'm1'));
    engine.deliver(userMessage('alice', 'strm', 'm2'));
    old.ack();
    engine.unsubscribe('alice', 'strm', old);
    old.requeueAll();
    const otherName = session('other name');
    engine.subscribe('alice', 'errors', otherName);
    assert.deepEqual(otherName.bodies(), []);
    const next = session('next');
    engine.subscribe('alice', 'strm', next);
    assert.deepEqual(next.bodies(), ['m2']);
    assert.equal(next.received[0]!.delivery.redelivered, true);
    const after = session('after');
    engine.subscribe('alice', 'strm', after);
    assert.deepEqual(after.bodies(), [], 'a parked message goes to one subscriber');
  });

  it('park a message NACKed by a session that has left', () => {
    const { engine } = mailboxes();
    const old = session('old');
    engine.subscribe('alice', 'strm', old);
    engine.deliver(userMessage('alice', 'strm', 'late nack'));
    engine.unsubscribe('alice', 'strm', old);
    old.nack();
    const next = session('next');
    engine.subscribe('alice', 'strm', next);
    assert.deepEqual(next.bodies(), ['late nack']);
  });

  it('drop a copy requeued while another session of the user is subscribed: that one has its own', () => {
    const { engine } = mailboxes();
    const a = session('a');
    const b = session('b');
    engine.subscribe('alice', 'strm', a);
    engine.subscribe('alice', 'strm', b);
    engine.deliver(userMessage('alice', 'strm', 'x'));
    engine.unsubscribe('alice', 'strm', a);
    a.requeueAll();
    engine.unsubscribe('alice', 'strm', b);
    const c = session('c');
    engine.subscribe('alice', 'strm', c);
    assert.deepEqual(c.bodies(), []);
    assert.equal(b.unsettled.length, 1);
  });

  it('count parked deliveries towards maxRedeliveries', () => {
    const { engine } = mailboxes({ maxRedeliveries: 2 });
    const first = session('first');
    engine.subscribe('alice', 'strm', first);
    engine.deliver(userMessage('alice', 'strm', 'x'));
    engine.unsubscribe('alice', 'strm', first);
    first.requeueAll();
    const second = session('second');
    engine.subscribe('alice', 'strm', second);
    assert.deepEqual(second.bodies(), ['x']);
    engine.unsubscribe('alice', 'strm', second);
    second.requeueAll();
    const third = session('third');
    engine.subscribe('alice', 'strm', third);
    assert.deepEqual(third.bodies(), [], 'delivered twice already');
  });

  it('keep at most parkedPerUser messages per user, dropping the oldest', () => {
    const { engine, records } = mailboxes({ parkedPerUser: 2 });
    const old = session('old');
    engine.subscribe('alice', 'strm', old);
    for (const b of ['m1', 'm2', 'm3']) engine.deliver(userMessage('alice', 'strm', b));
    engine.unsubscribe('alice', 'strm', old);
    old.requeueAll();
    const next = session('next');
    engine.subscribe('alice', 'strm', next);
    assert.deepEqual(next.bodies(), ['m2', 'm3']);
    assert.ok(records.some((r) => r.msg === 'parked user messages over the limit; oldest dropped'));
  });

  it("drop the user's oldest parked message when over the limit, whatever its mailbox", () => {
    const { engine } = mailboxes({ parkedPerUser: 2 });
    const leave = (name: string, body: string): void => {
      const s = session(`${name} session`);
      engine.subscribe('alice', name, s);
      engine.deliver(userMessage('alice', name, body));
      engine.unsubscribe('alice', name, s);
      s.requeueAll();
    };
    leave('a', 'a1');
    leave('a', 'a2');
    leave('b', 'b1');
    const a = session('a');
    const b = session('b');
    engine.subscribe('alice', 'a', a);
    engine.subscribe('alice', 'b', b);
    assert.deepEqual(a.bodies(), ['a2']);
    assert.deepEqual(b.bodies(), ['b1']);
  });
});

describe('durable user mailboxes', () => {
  it('send a new subscriber its stored backlog first, then what came live meanwhile, each record once', async () => {
    const { engine } = mailboxes();
    const durable = new FakeDurable();
    engine.registerDurable('messages', durable);
    const s = session('s');
    engine.subscribe('alice', 'messages', s);
    assert.equal(engine.deliver(userMessage('alice', 'messages', 'r2', '2')), 1);
    engine.deliver(userMessage('alice', 'messages', 'r3', '3'));
    assert.deepEqual(s.bodies(), []);
    durable.answer([userMessage('alice', 'messages', 'r1', '1'), userMessage('alice', 'messages', 'r2', '2')]);
    await settleDown();
    assert.deepEqual(s.bodies(), ['r1', 'r2', 'r3']);
    engine.deliver(userMessage('alice', 'messages', 'r4', '4'));
    assert.deepEqual(s.bodies(), ['r1', 'r2', 'r3', 'r4']);
  });

  it('report the acknowledgement of a stored message to the mailbox', async () => {
    const { engine } = mailboxes();
    const durable = new FakeDurable();
    engine.registerDurable('messages', durable);
    const s = session('s');
    engine.subscribe('alice', 'messages', s);
    durable.answer([userMessage('alice', 'messages', 'r1', '1')]);
    await settleDown();
    engine.deliver(userMessage('alice', 'messages', 'plain'));
    s.ack('r1');
    s.ack('plain');
    assert.deepEqual(durable.acks, ['alice:1']);
  });

  it('leave a stored message owed in the store when its session goes away, instead of parking it', async () => {
    const { engine } = mailboxes();
    const durable = new FakeDurable();
    engine.registerDurable('messages', durable);
    const s = session('s');
    engine.subscribe('alice', 'messages', s);
    durable.answer([]);
    await settleDown();
    engine.deliver(userMessage('alice', 'messages', 'stored', '7'));
    engine.unsubscribe('alice', 'messages', s);
    s.requeueAll();
    const next = session('next');
    engine.subscribe('alice', 'messages', next);
    durable.answer([userMessage('alice', 'messages', 'stored', '7')]);
    await settleDown();
    assert.deepEqual(next.bodies(), ['stored'], 'once, from the store');
    assert.equal(next.received[0]!.delivery.redelivered, false);
  });

  it('park a message that is not stored like any other, and give it to the next subscriber after the backlog', async () => {
    const { engine } = mailboxes();
    const durable = new FakeDurable();
    engine.registerDurable('messages', durable);
    const s = session('s');
    engine.subscribe('alice', 'messages', s);
    durable.answer([]);
    await settleDown();
    engine.deliver(userMessage('alice', 'messages', 'not stored'));
    engine.unsubscribe('alice', 'messages', s);
    s.requeueAll();
    const next = session('next');
    engine.subscribe('alice', 'messages', next);
    engine.deliver(userMessage('alice', 'messages', 'live'));
    durable.answer([userMessage('alice', 'messages', 'stored', '1')]);
    await settleDown();
    assert.deepEqual(next.bodies(), ['stored', 'not stored', 'live']);
    assert.deepEqual(next.received.map((r) => r.delivery.redelivered), [false, true, false]);
  });

  it('give a stored message NACKed by a session that has left to the next subscriber once, from the store', async () => {
    const { engine } = mailboxes();
    const durable = new FakeDurable();
    engine.registerDurable('messages', durable);
    const s = session('s');
    engine.subscribe('alice', 'messages', s);
    durable.answer([userMessage('alice', 'messages', 'stored', '1')]);
    await settleDown();
    engine.unsubscribe('alice', 'messages', s);
    s.nack();
    const next = session('next');
    engine.subscribe('alice', 'messages', next);
    durable.answer([userMessage('alice', 'messages', 'stored', '1')]);
    await settleDown();
    assert.deepEqual(next.bodies(), ['stored']);
  });

  it('send nothing to a subscriber that left while its backlog was read', async () => {
    const { engine } = mailboxes();
    const durable = new FakeDurable();
    engine.registerDurable('messages', durable);
    const s = session('s');
    engine.subscribe('alice', 'messages', s);
    engine.deliver(userMessage('alice', 'messages', 'live'));
    engine.unsubscribe('alice', 'messages', s);
    durable.answer([userMessage('alice', 'messages', 'r1', '1')]);
    await settleDown();
    assert.deepEqual(s.bodies(), []);
  });

  it('send only live messages when the backlog cannot be read, and log why', async () => {
    const { engine, records } = mailboxes();
    const durable = new FakeDurable();
    engine.registerDurable('messages', durable);
    const s = session('s');
    engine.subscribe('alice', 'messages', s);
    engine.deliver(userMessage('alice', 'messages', 'live'));
    durable.fail(new Error('store down'));
    await settleDown();
    assert.deepEqual(s.bodies(), ['live']);
    assert.ok(records.some((r) => r.msg === 'could not read the stored backlog of a mailbox'));
  });
});
