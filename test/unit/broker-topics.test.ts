import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CoreMessage } from '../../src/core/message.js';
import { Topics, type TopicAuthority } from '../../src/core/topics.js';
import { FakeConsumer, FakeLink, principalOf, recordingLog, settleDown, topicMessage } from './broker-fakes.js';

function topics(): { engine: Topics; records: { level: number; msg: string }[] } {
  const { log, records } = recordingLog();
  return { engine: new Topics(log), records };
}

/** An authority whose history the test hands out when it chooses. */
class FakeAuthority implements TopicAuthority {
  readonly asked: string[] = [];
  private answer: ((msgs: CoreMessage[] | undefined) => void) | undefined;
  private fail: ((err: Error) => void) | undefined;
  async authorize(_p: unknown, filter: string): Promise<string | undefined> {
    return filter.startsWith('private/') ? 'not yours' : undefined;
  }
  backlog(_p: unknown, topic: string, since: string): Promise<CoreMessage[] | undefined> {
    this.asked.push(`${topic}@${since}`);
    return new Promise((resolve, reject) => {
      this.answer = resolve;
      this.fail = reject;
    });
  }
  publishRefusal(topic: string): string | undefined {
    return topic.startsWith('thread/') ? 'written by the thread service' : undefined;
  }
  answerWith(msgs: CoreMessage[] | undefined): void {
    this.answer!(msgs);
  }
  failWith(err: Error): void {
    this.fail!(err);
  }
}

describe('topic fan-out', () => {
  it('hands a message to every filter that matches: exact, + and #', () => {
    const { engine } = topics();
    const exact = new FakeConsumer('exact');
    const plus = new FakeConsumer('plus');
    const hash = new FakeConsumer('hash');
    const all = new FakeConsumer('all');
    const other = new FakeConsumer('other');
    engine.subscribe('a/b/c', exact);
    engine.subscribe('a/+/c', plus);
    engine.subscribe('a/#', hash);
    engine.subscribe('#', all);
    engine.subscribe('a/b/d', other);
    assert.equal(engine.deliver(topicMessage('a/b/c', 'm1')), 4);
    assert.equal(engine.deliver(topicMessage('a', 'm2')), 2, 'a/# matches a itself');
    for (const c of [exact, plus]) assert.deepEqual(c.bodies(), ['m1']);
    for (const c of [hash, all]) assert.deepEqual(c.bodies(), ['m1', 'm2']);
    assert.deepEqual(other.bodies(), []);
    assert.equal(engine.size, 5);
  });

  it('keeps $ topics away from filters that start with a wildcard', () => {
    const { engine } = topics();
    const all = new FakeConsumer('all');
    const sys = new FakeConsumer('sys');
    engine.subscribe('#', all);
    engine.subscribe('$SYS/#', sys);
    assert.equal(engine.deliver(topicMessage('$SYS/broker/uptime', 'up')), 1);
    assert.deepEqual(all.bodies(), []);
    assert.deepEqual(sys.bodies(), ['up']);
  });

  it('delivers without settle: a topic waits for no one', () => {
    const { engine } = topics();
    const c = new FakeConsumer('c');
    c.window = 0; // capacity is a queue matter: a full topic consumer still gets (and holds) the message
    engine.subscribe('t', c);
    engine.deliver(topicMessage('t', 'x'));
    assert.equal(c.received.length, 1);
    assert.equal(c.received[0]!.delivery.settle, undefined);
    assert.equal(c.received[0]!.delivery.redelivered, false);
  });

  it("hands the publisher's own session its message: no-local is the protocol's business", () => {
    const { engine } = topics();
    const self = new FakeConsumer('s1');
    engine.subscribe('t', self);
    assert.equal(engine.deliver(topicMessage('t', 'echo', { publisherSession: 's1' })), 1);
    assert.deepEqual(self.bodies(), ['echo']);
  });

  it('reaches only the audience of a message, and staff', () => {
    const { engine } = topics();
    const member = new FakeConsumer('m', principalOf('alice'));
    const outsider = new FakeConsumer('o', principalOf('bob'));
    const admin = new FakeConsumer('a', principalOf('root', 'admin'));
    for (const c of [member, outsider, admin]) engine.subscribe('room/1', c);
    assert.equal(engine.deliver(topicMessage('room/1', 'hi', { audience: new Set(['alice']) })), 2);
    assert.deepEqual(member.bodies(), ['hi']);
    assert.deepEqual(outsider.bodies(), []);
    assert.deepEqual(admin.bodies(), ['hi']);
  });

  it('stops delivering after unsubscribe, and unsubscribing twice is harmless', () => {
    const { engine } = topics();
    const c = new FakeConsumer('c');
    engine.subscribe('a/+', c);
    engine.deliver(topicMessage('a/1', 'one'));
    engine.unsubscribe('a/+', c);
    engine.unsubscribe('a/+', c);
    assert.equal(engine.deliver(topicMessage('a/2', 'two')), 0);
    assert.deepEqual(c.bodies(), ['one']);
    assert.equal(engine.size, 0);
  });

  it("goes on with the others when one consumer's deliver throws, and logs it", () => {
    const { engine, records } = topics();
    const broken = new FakeConsumer('broken');
    broken.failing = true;
    const fine = new FakeConsumer('fine');
    engine.subscribe('t', broken);
    engine.subscribe('t', fine);
    assert.doesNotThrow(() => engine.deliver(topicMessage('t', 'x')));
    assert.deepEqual(fine.bodies(), ['x']);
    assert.ok(records.some((r) => r.msg === 'delivery to a consumer failed'));
  });

  it('counts the same consumer subscribed twice to a filter as one subscription', () => {
    const { engine } = topics();
    const link = new FakeLink();
    engine.setClusterLink(link);
    const c = new FakeConsumer('c');
    const g = new FakeConsumer('g');
    const h = new FakeConsumer('h');
    for (const filter of ['t', 'x/+', 'x/#']) {
      engine.subscribe(filter, c);
      engine.subscribe(filter, c);
    }
    engine.subscribeShared('grp', 'x/y', g);
    engine.subscribeShared('grp', 'x/y', g);
    engine.subscribeShared('grp', 'x/y', h);
    assert.equal(engine.size, 3);
    assert.equal(engine.deliver(topicMessage('x/y', 'm1')), 3, 'x/+, x/# and the group');
    engine.deliver(topicMessage('x/y', 'm2'));
    assert.deepEqual([g.bodies(), h.bodies()], [['m1'], ['m2']], 'one share each');
    for (const filter of ['t', 'x/+', 'x/#']) engine.unsubscribe(filter, c);
    engine.unsubscribeShared('grp', 'x/y', g);
    engine.unsubscribeShared('grp', 'x/y', h);
    assert.equal(engine.size, 0);
    assert.equal(engine.deliver(topicMessage('x/y', 'after')), 0);
    assert.deepEqual(link.interests, ['+topic:t', '+topic:x/+', '+topic:x/#', '+topic:x/y', '-topic:t', '-topic:x/+', '-topic:x/#', '-topic:x/y']);
  });

  it('tells the cluster link when the first subscription of a filter comes and the last goes', () => {
    const { engine } = topics();
    const link = new FakeLink();
    engine.setClusterLink(link);
    const a = new FakeConsumer('a');
    const b = new FakeConsumer('b');
    engine.subscribe('x/#', a);
    engine.subscribe('x/#', b);
    engine.subscribeShared('g', 'x/#', new FakeConsumer('s'));
    engine.unsubscribe('x/#', a);
    engine.unsubscribe('x/#', b);
    assert.deepEqual(link.interests, ['+topic:x/#'], 'the shared group still needs the filter');
    engine.unsubscribeShared('g', 'x/#', new FakeConsumer('not a member'));
    assert.deepEqual(link.interests, ['+topic:x/#']);
  });
});

describe('shared subscription groups', () => {
  it('give each message to one member, round-robin', () => {
    const { engine } = topics();
    const members = ['a', 'b', 'c'].map((id) => new FakeConsumer(id));
    for (const m of members) engine.subscribeShared('workers', 'jobs/+', m);
    for (let i = 1; i <= 6; i++) assert.equal(engine.deliver(topicMessage('jobs/x', `m${i}`)), 1);
    assert.deepEqual(members.map((m) => m.bodies()), [['m1', 'm4'], ['m2', 'm5'], ['m3', 'm6']]);
  });

  it('skip members without capacity; when all are full, the next eligible member in turn holds it', () => {
    const { engine } = topics();
    const a = new FakeConsumer('a');
    const b = new FakeConsumer('b');
    engine.subscribeShared('g', 't', a);
    engine.subscribeShared('g', 't', b);
    a.window = 0;
    engine.deliver(topicMessage('t', 'm1'));
    engine.deliver(topicMessage('t', 'm2'));
    assert.deepEqual(a.bodies(), []);
    assert.deepEqual(b.bodies(), ['m1', 'm2']);
    b.window = 0;
    engine.deliver(topicMessage('t', 'm3'));
    assert.deepEqual(a.bodies(), ['m3'], 'the turn had come back to a');
    assert.deepEqual(b.bodies(), ['m1', 'm2']);
  });

  it('sit beside plain subscribers: each gets its copy', () => {
    const { engine } = topics();
    const plain = new FakeConsumer('plain');
    const member = new FakeConsumer('member');
    engine.subscribe('t', plain);
    engine.subscribeShared('g', 't', member);
    engine.subscribeShared('h', '#', new FakeConsumer('other group'));
    assert.equal(engine.deliver(topicMessage('t', 'x')), 3);
    assert.deepEqual(plain.bodies(), ['x']);
    assert.deepEqual(member.bodies(), ['x']);
    assert.equal(engine.size, 1, 'size counts plain subscriptions');
  });

  it('pass over members outside the audience; with none inside, nobody gets it', () => {
    const { engine } = topics();
    const bob = new FakeConsumer('b', principalOf('bob'));
    const alice = new FakeConsumer('a', principalOf('alice'));
    engine.subscribeShared('g', 't', bob);
    engine.subscribeShared('g', 't', alice);
    engine.deliver(topicMessage('t', 'for alice', { audience: new Set(['alice']) }));
    engine.deliver(topicMessage('t', 'for carol', { audience: new Set(['carol']) }));
    assert.deepEqual(bob.bodies(), []);
    assert.deepEqual(alice.bodies(), ['for alice']);
  });

  it('go away with their last member, and the cluster link hears of it', () => {
    const { engine } = topics();
    const link = new FakeLink();
    engine.setClusterLink(link);
    const a = new FakeConsumer('a');
    const b = new FakeConsumer('b');
    engine.subscribeShared('g', 't', a);
    engine.subscribeShared('g', 't', b);
    engine.unsubscribeShared('g', 't', a);
    engine.deliver(topicMessage('t', 'x'));
    assert.deepEqual(b.bodies(), ['x']);
    engine.unsubscribeShared('g', 't', b);
    assert.equal(engine.deliver(topicMessage('t', 'y')), 0);
    assert.deepEqual(link.shared, ['+g:t', '-g:t']);
    assert.deepEqual(link.interests, ['+topic:t', '-topic:t']);
  });

  it('are served on the node the cluster link picks', () => {
    const { engine } = topics();
    const link = new FakeLink();
    link.pick = (_g, _f, msg) => msg.body.toString() !== 'elsewhere';
    engine.setClusterLink(link);
    const m = new FakeConsumer('m');
    const plain = new FakeConsumer('p');
    engine.subscribeShared('g', 't', m);
    engine.subscribe('t', plain);
    assert.equal(engine.deliver(topicMessage('t', 'elsewhere')), 1);
    assert.equal(engine.deliver(topicMessage('t', 'here')), 2);
    assert.deepEqual(m.bodies(), ['here']);
    assert.deepEqual(plain.bodies(), ['elsewhere', 'here']);
  });
});

describe('topic authority and recovery', () => {
  it('refuses $ topics to clients and asks the authority about the rest', async () => {
    const { engine } = topics();
    assert.match(engine.publishRefusal('$SYS/x') as string, /written by the server only/);
    assert.equal(engine.publishRefusal('thread/1'), undefined, 'no authority: anything else is open');
    assert.equal(await engine.authorize(principalOf('u'), 'private/1'), undefined);
    engine.setAuthority(new FakeAuthority());
    assert.equal(engine.publishRefusal('thread/1'), 'written by the thread service');
    assert.equal(engine.publishRefusal('news'), undefined);
    assert.equal(await engine.authorize(principalOf('u'), 'private/1'), 'not yours');
    assert.equal(await engine.authorize(principalOf('u'), 'news'), undefined);
  });

  it('sends the history first, then what came live meanwhile, each record once', async () => {
    const { engine } = topics();
    const authority = new FakeAuthority();
    engine.setAuthority(authority);
    const c = new FakeConsumer('c');
    const other = new FakeConsumer('other');
    engine.subscribe('room', other);
    engine.subscribe('room', c, { principal: c.principal, position: '41' });
    assert.deepEqual(authority.asked, ['room@41']);
    assert.equal(engine.deliver(topicMessage('room', 'r43', { recordId: '43' })), 2, 'a waiting subscriber counts as delivered');
    engine.deliver(topicMessage('room', 'live'));
    assert.deepEqual(c.bodies(), [], 'live messages wait for the history');
    assert.deepEqual(other.bodies(), ['r43', 'live']);
    authority.answerWith([topicMessage('room', 'r42', { recordId: '42' }), topicMessage('room', 'r43', { recordId: '43' })]);
    await settleDown();
    assert.deepEqual(c.bodies(), ['r42', 'r43', 'live']);
    engine.deliver(topicMessage('room', 'after'));
    assert.deepEqual(c.bodies(), ['r42', 'r43', 'live', 'after']);
  });

  it('sends only live messages when the history cannot be read, and logs why', async () => {
    const { engine, records } = topics();
    const authority = new FakeAuthority();
    engine.setAuthority(authority);
    const c = new FakeConsumer('c');
    engine.subscribe('room', c, { principal: c.principal, position: '1' });
    engine.deliver(topicMessage('room', 'live'));
    authority.failWith(new Error('disk on fire'));
    await settleDown();
    assert.deepEqual(c.bodies(), ['live']);
    assert.ok(records.some((r) => r.msg === 'could not read topic history for recovery'));
  });

  it('sends nothing to a subscriber that left while its history was read', async () => {
    const { engine } = topics();
    const authority = new FakeAuthority();
    engine.setAuthority(authority);
    const c = new FakeConsumer('c');
    engine.subscribe('room', c, { principal: c.principal, position: '1' });
    engine.deliver(topicMessage('room', 'live'));
    engine.unsubscribe('room', c);
    authority.answerWith([topicMessage('room', 'old', { recordId: '1' })]);
    await settleDown();
    assert.deepEqual(c.bodies(), []);
  });

  it('subscribes plainly when asked to recover without an authority or history', async () => {
    const { engine } = topics();
    const c = new FakeConsumer('c');
    engine.subscribe('room', c, { principal: c.principal, position: '1' });
    engine.deliver(topicMessage('room', 'live'));
    assert.deepEqual(c.bodies(), ['live']);
    const authority = new FakeAuthority();
    engine.setAuthority(authority);
    const d = new FakeConsumer('d');
    engine.subscribe('plain', d, { principal: d.principal, position: '1' });
    authority.answerWith(undefined); // the topic keeps no history
    await settleDown();
    engine.deliver(topicMessage('plain', 'x'));
    assert.deepEqual(d.bodies(), ['x']);
  });
});
