/**
 * Chat threads, driven the way the customer-service chat client's StompManager drives them:
 * @stomp/stompjs with a `login` connect header and 10 s heart-beats,
 * SUBSCRIBE /topic/{thread with / as .} ack:client with message.ack(),
 * publish to /app/{thread}, the client's message shapes, and the HTTP fallback.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it, before, after } from 'node:test';
import { WebSocket } from 'ws';
import { Client, type IMessage, type IFrame } from '@stomp/stompjs';
import { ManualClock } from '../../src/clock.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';

Object.assign(globalThis, { WebSocket });

interface ChatMessage {
  id: string;
  uid: string;
  type: string;
  content: string;
  status: string;
  createdAt: string;
  channel: string;
  extra: string;
  thread: { topic: string };
  user: { uid: string; nickname?: string };
  recalled?: boolean;
}

/** One chat party, in the shape of the chat client's StompManager (written afresh). */
class ChatParty {
  client!: Client;
  readonly received: ChatMessage[] = [];
  readonly errors: IFrame[] = [];
  readonly queueErrors: { error: string; destination: string }[] = [];
  private waiters: (() => void)[] = [];

  constructor(
    private readonly url: string,
    readonly username: string,
    private readonly token: string,
    readonly thread: { topic: string },
  ) {}

  get transformedTopic(): string {
    return this.thread.topic.replace(/\//g, '.');
  }

  connect(subscribeHeaders: Record<string, string> = {}): Promise<void> {
    this.client = new Client({
      brokerURL: this.url,
      connectHeaders: { login: this.token },
      heartbeatIncoming: 10 * 1000,
      heartbeatOutgoing: 10 * 1000,
      reconnectDelay: 0,
    });
    this.client.onStompError = (f) => {
      this.errors.push(f);
      this.wake();
    };
    return new Promise((resolve) => {
      this.client.onConnect = () => {
        this.client.subscribe('/user/queue/errors', (m) => {
          this.queueErrors.push(JSON.parse(m.body) as { error: string; destination: string });
          this.wake();
        });
        this.client.subscribe(
          '/topic/' + this.transformedTopic,
          (message: IMessage) => {
            if (message.body) this.received.push(JSON.parse(message.body) as ChatMessage);
            message.ack();
            this.wake();
          },
          { ack: 'client', ...subscribeHeaders },
        );
        // A RECEIPT round trip: the subscriptions are live on the server.
        const id = randomUUID();
        this.client.watchForReceipt(id, () => resolve());
        this.client.publish({ destination: '/topic/ignored.sync', headers: { receipt: id } });
      };
      this.client.activate();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.username}: timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  message(type: string, content: string, extra: object = {}, uid = randomUUID()): Record<string, unknown> {
    return {
      uid,
      type,
      content,
      status: 'SENDING',
      createdAt: new Date().toISOString(),
      channel: 'WEB',
      extra: JSON.stringify({ orgUid: 'org1', ...extra }),
      thread: this.thread,
      user: { uid: this.username, nickname: this.username },
    };
  }

  send(msg: Record<string, unknown>): void {
    this.client.publish({ destination: '/app/' + this.transformedTopic, body: JSON.stringify(msg) });
  }

  async disconnect(): Promise<void> {
    await this.client.deactivate();
  }
}

describe('chat threads over STOMP (customer-service chat)', () => {
  const clock = new ManualClock(Date.now());
  let s: TestServer;
  let admin: string;
  let visitorToken: string;
  let agentToken: string;
  const thread = { topic: 'org1/visitor/v1' };
  let visitor: ChatParty;
  let agent: ChatParty;

  before(async () => {
    s = await startServer({ threadTypingPerSecond: 2 }, clock);
    admin = await login(s.url);
    for (const name of ['visitor1', 'agent1', 'stranger']) {
      await api(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password' } });
    }
    visitorToken = await login(s.url, 'visitor1', 'visitor1-password');
    agentToken = await login(s.url, 'agent1', 'agent1-password');
    const created = await api(s.url, 'POST', '/api/v1/thread', {
      token: admin,
      body: { thread: thread.topic, members: [{ user: 'visitor1', role: 'visitor' }, { user: 'agent1', role: 'agent' }] },
    });
    assert.equal(created.status, 200, created.body.message);
    const url = s.url.replace(/^http/, 'ws') + '/stomp';
    visitor = new ChatParty(url, 'visitor1', visitorToken, thread);
    agent = new ChatParty(url, 'agent1', agentToken, thread);
    await visitor.connect();
    await agent.connect();
  });
  after(async () => {
    await visitor.disconnect();
    await agent.disconnect();
    await s.stop();
  });

  it('broadcasts to both parties, the sender included with status SUCCESS and server time', async () => {
    const before = visitor.received.length;
    const msg = visitor.message('TEXT', 'Hello, I need help with my order');
    visitor.send(msg);
    await visitor.until(() => visitor.received.length > before, 'own message back');
    await agent.until(() => agent.received.some((m) => m.uid === msg['uid']), 'visitor message');
    const own = visitor.received.at(-1)!;
    assert.equal(own.uid, msg['uid']);
    assert.equal(own.status, 'SUCCESS');
    assert.equal(own.user.uid, 'visitor1', 'the chat client recognises its own messages by user.uid');
    assert.equal(own.createdAt, new Date(clock.now()).toISOString(), 'server time');
    assert.match(own.id, /^\d+$/);
  });

  it('sends a resend with the same uid neither to the store nor to anyone twice', async () => {
    const msg = agent.message('TEXT', 'once only');
    agent.send(msg);
    agent.send(msg);
    const marker = agent.message('TEXT', 'marker');
    agent.send(marker);
    await visitor.until(() => visitor.received.some((m) => m.uid === marker['uid']), 'marker');
    assert.equal(visitor.received.filter((m) => m.uid === msg['uid']).length, 1);
    const history = await api<ChatMessage[]>(s.url, 'GET', '/api/v1/thread/org1.visitor.v1/messages?limit=100', { token: agentToken });
    assert.equal(history.body.data.filter((m) => m.uid === msg['uid']).length, 1);
  });

  it('flips statuses with DELIVERED and READ receipts and broadcasts them', async () => {
    const msg = agent.message('TEXT', 'Your order ships today');
    agent.send(msg);
    await visitor.until(() => visitor.received.some((m) => m.uid === msg['uid']), 'agent message');
    // the chat client: the visitor answers every message from others with a READ receipt
    const receipt = { ...visitor.message('READ', msg['uid'] as string) };
    visitor.send(receipt);
    await agent.until(() => agent.received.some((m) => m.type === 'READ' && m.content === msg['uid']), 'READ receipt');
    const r = await api<{ userId: string; status: string }[]>(s.url, 'GET', `/api/v1/thread/org1.visitor.v1/messages/${msg['uid'] as string}/receipts`, { token: agentToken });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.data.map((x) => x.status), ['READ']);
    // a receipt for an unknown uid is refused to the sender only
    visitor.send(visitor.message('DELIVERED', 'no-such-uid'));
    await visitor.until(() => visitor.queueErrors.length > 0, 'an error on /user/queue/errors');
    assert.match(visitor.queueErrors.shift()!.error, /names message uid "no-such-uid", which this thread does not have/);
  });

  it('lets the author recall within the window, refuses others and late recalls, and replays recalled messages as recalled', async () => {
    const msg = visitor.message('TEXT', 'oops, wrong chat');
    visitor.send(msg);
    await agent.until(() => agent.received.some((m) => m.uid === msg['uid']), 'message to recall');
    agent.send(agent.message('RECALL', msg['uid'] as string));
    await agent.until(() => agent.queueErrors.length > 0, 'refusal');
    assert.match(agent.queueErrors.shift()!.error, /only the author of a message can recall it/);
    visitor.send(visitor.message('RECALL', msg['uid'] as string));
    await agent.until(() => agent.received.some((m) => m.type === 'RECALL' && m.content === msg['uid']), 'RECALL broadcast');
    const history = await api<ChatMessage[]>(s.url, 'GET', '/api/v1/thread/org1.visitor.v1/messages?limit=100', { token: visitorToken });
    assert.equal(history.body.data.find((m) => m.uid === msg['uid'])?.recalled, true);

    const late = visitor.message('TEXT', 'too late to take back');
    visitor.send(late);
    await agent.until(() => agent.received.some((m) => m.uid === late['uid']), 'late message');
    clock.advance(121_000);
    visitor.send(visitor.message('RECALL', late['uid'] as string));
    await visitor.until(() => visitor.queueErrors.length > 0, 'refusal');
    assert.match(visitor.queueErrors.shift()!.error, /120-second recall window/);
  });

  it('broadcasts TYPING without storing it, and refuses a flood', async () => {
    const typing = visitor.message('TYPING', '');
    visitor.send(typing);
    await agent.until(() => agent.received.some((m) => m.uid === typing['uid']), 'TYPING');
    for (let i = 0; i < 5; i++) visitor.send(visitor.message('TYPING', ''));
    // Frames are handled in order: once this marker is back, every refusal has arrived.
    const marker = visitor.message('TEXT', 'after the flood');
    visitor.send(marker);
    await visitor.until(() => visitor.received.some((m) => m.uid === marker['uid']), 'marker');
    assert.ok(visitor.queueErrors.length >= 1);
    for (const e of visitor.queueErrors) assert.match(e.error, /TYPING too often: at most 2 per second/);
    visitor.queueErrors.length = 0;
    const history = await api<ChatMessage[]>(s.url, 'GET', '/api/v1/thread/org1.visitor.v1/messages?limit=500', { token: visitorToken });
    assert.ok(!history.body.data.some((m) => m.type === 'TYPING'));
    assert.equal(visitor.errors.length, 0, 'the connection stayed up');
  });

  it('stores rating and leave-message submissions with validated extra', async () => {
    const rated = visitor.received.find((m) => m.user.uid === 'agent1')!;
    const rate = visitor.message('RATE_SUBMIT', rated.uid, { score: 5, resolved: true, content: 'great' });
    visitor.send(rate);
    await visitor.until(() => visitor.received.some((m) => m.uid === rate['uid']), 'RATE_SUBMIT back');
    visitor.send(visitor.message('RATE_SUBMIT', rated.uid, { score: 9 }));
    await visitor.until(() => visitor.queueErrors.length > 0, 'bad score');
    assert.match(visitor.queueErrors.shift()!.error, /score must be an integer from 1 to 5/);
    const leave = visitor.message('LEAVE_MSG_SUBMIT', 'lm1', { nickname: 'V', contact: 'v@example.test', content: 'call me', images: [] });
    visitor.send(leave);
    await agent.until(() => agent.received.some((m) => m.uid === leave['uid']), 'LEAVE_MSG_SUBMIT');
    visitor.send(visitor.message('LEAVE_MSG_SUBMIT', 'lm2', { contact: 'x' }));
    await visitor.until(() => visitor.queueErrors.length > 0, 'missing content');
    assert.match(visitor.queueErrors.shift()!.error, /extra.content must be a non-empty string/);
  });

  it('refuses bad messages to the sender only, stores none of them, and keeps the connection', async () => {
    const count = async () => (await api<ChatMessage[]>(s.url, 'GET', '/api/v1/thread/org1.visitor.v1/messages?limit=500', { token: agentToken })).body.data.length;
    const before = await count();
    const bad: [string | Record<string, unknown>, RegExp][] = [
      ['not json', /not valid JSON/],
      [{ ...visitor.message('TEXT', 'x'), thread: undefined }, /thread is missing/],
      [{ ...visitor.message('TEXT', 'x'), thread: { topic: 'org1/visitor/other' } }, /does not match the destination/],
      [{ ...visitor.message('SHOUT', 'x') }, /unknown type "SHOUT"/],
      [visitor.message('TEXT', 'x'.repeat(20_000)), /over the 16384-byte limit/],
      [{ ...visitor.message('TEXT', 'x'), user: { uid: 'agent1' } }, /is not the connected user/],
    ];
    for (const [body] of bad) visitor.client.publish({ destination: '/app/' + visitor.transformedTopic, body: typeof body === 'string' ? body : JSON.stringify(body) });
    await visitor.until(() => visitor.queueErrors.length >= bad.length, 'all refusals');
    bad.forEach(([, re], i) => assert.match(visitor.queueErrors[i]!.error, re));
    visitor.queueErrors.length = 0;
    assert.equal(await count(), before);
    assert.equal(visitor.errors.length, 0);
    assert.equal(visitor.client.connected, true);
  });

  it('recovers exactly what a dropped client missed when it subscribes with since', async () => {
    const lastSeen = agent.received.filter((m) => m.id).at(-1)!;
    await agent.disconnect();
    const missed = [visitor.message('TEXT', 'missed 1'), visitor.message('TEXT', 'missed 2'), visitor.message('IMAGE', 'https://img.example.test/1.png')];
    for (const m of missed) visitor.send(m);
    await visitor.until(() => missed.every((m) => visitor.received.some((r) => r.uid === m['uid'])), 'own messages');
    const back = new ChatParty(s.url.replace(/^http/, 'ws') + '/stomp', 'agent1', agentToken, thread);
    await back.connect({ since: lastSeen.id });
    const live = visitor.message('TEXT', 'live after reconnect');
    visitor.send(live);
    await back.until(() => back.received.some((m) => m.uid === live['uid']), 'live message');
    const uids = back.received.map((m) => m.uid);
    assert.deepEqual(uids, [...missed.map((m) => m['uid']), live['uid']], 'missed messages in order, then live, none twice');
    agent = back;
  });

  it('refuses non-members with an ERROR naming the thread, on SUBSCRIBE and on publish', async () => {
    const strangerToken = await login(s.url, 'stranger', 'stranger-password');
    const url = s.url.replace(/^http/, 'ws') + '/stomp';
    const spy = new Client({ brokerURL: url, connectHeaders: { login: strangerToken }, reconnectDelay: 0 });
    const errors: IFrame[] = [];
    spy.onStompError = (f) => errors.push(f);
    await new Promise<void>((resolve) => {
      spy.onConnect = () => {
        spy.subscribe('/topic/org1.visitor.v1', () => undefined, { ack: 'client' });
        resolve();
      };
      spy.activate();
    });
    while (errors.length === 0) await new Promise((r) => setTimeout(r, 10));
    assert.match(errors[0]!.body, /not a member of thread org1.visitor.v1/);
    await spy.deactivate();
    // A wildcard subscriber who is not a member sees no thread traffic.
    const wild = new Client({ brokerURL: url, connectHeaders: { login: strangerToken }, reconnectDelay: 0 });
    const seen: IMessage[] = [];
    await new Promise<void>((resolve) => {
      wild.onConnect = () => {
        wild.subscribe('/topic/org1.#', (m) => seen.push(m));
        const id = randomUUID();
        wild.watchForReceipt(id, () => resolve());
        wild.publish({ destination: '/app/org1.visitor.v1', body: JSON.stringify({ uid: 'x', type: 'TEXT', content: 'hi', thread }), headers: { receipt: id } });
      };
      wild.onStompError = () => resolve();
      wild.activate();
    });
    const m = visitor.message('TEXT', 'private');
    visitor.send(m);
    await agent.until(() => agent.received.some((r) => r.uid === m['uid']), 'member got it');
    assert.equal(seen.length, 0);
    await wild.deactivate();
  });

  it('sends over HTTP with exactly the effect of a STOMP publish (the chat client\'s sendHttpMessage)', async () => {
    const msg = visitor.message('TEXT', 'sent while the socket was down');
    const r = await api<ChatMessage>(s.url, 'POST', '/api/v1/message/send', { token: visitorToken, body: msg });
    assert.equal(r.status, 200);
    assert.equal(r.body.code, 200);
    assert.equal(r.body.data.uid, msg['uid']);
    assert.equal(r.body.data.status, 'SUCCESS');
    await agent.until(() => agent.received.some((m) => m.uid === msg['uid']), 'HTTP-sent message');
    const again = await api<ChatMessage>(s.url, 'POST', '/api/v1/message/send', { token: visitorToken, body: JSON.stringify(msg) });
    assert.equal(again.body.data.id, r.body.data.id, 'the same stored message, not a second one');
    // Refusals come with HTTP 200 and the code in the envelope: the chat client's fallback reads data.code and data.message.
    const bad = await api(s.url, 'POST', '/api/v1/message/send', { token: visitorToken, body: { ...msg, uid: 'u-x', type: 'NOPE' } });
    assert.equal(bad.status, 200);
    assert.equal(bad.body.code, 400);
    assert.match(bad.body.message, /unknown type "NOPE"/);
    const strangerToken = await login(s.url, 'stranger', 'stranger-password');
    const forbidden = await api(s.url, 'POST', '/api/v1/message/send', { token: strangerToken, body: { ...msg, uid: 'u-y' } });
    assert.equal(forbidden.status, 200);
    assert.equal(forbidden.body.code, 403);
    const missing = await api(s.url, 'POST', '/api/v1/message/send', { token: visitorToken, body: { ...msg, uid: 'u-z', thread: { topic: 'no/such' } } });
    assert.equal(missing.status, 200);
    assert.equal(missing.body.code, 404);
  });

  it('lists a user\'s threads with the last message and unread count, and closes a thread', async () => {
    const list = await api<{ topic: string; unread: number; lastMessage: ChatMessage | null }[]>(s.url, 'GET', '/api/v1/threads', { token: agentToken });
    assert.equal(list.status, 200);
    assert.equal(list.body.data[0]!.topic, 'org1.visitor.v1');
    assert.ok(list.body.data[0]!.unread > 0);
    assert.ok(list.body.data[0]!.lastMessage);
    assert.equal((await api(s.url, 'POST', '/api/v1/thread/org1.visitor.v1/close', { token: visitorToken })).status, 403, 'a visitor cannot close');
    const closed = await api<{ status: string }>(s.url, 'POST', '/api/v1/thread/org1.visitor.v1/close', { token: agentToken });
    assert.equal(closed.body.data.status, 'CLOSED');
    await visitor.until(() => visitor.received.some((m) => m.type === 'AUTO_CLOSED'), 'AUTO_CLOSED');
    visitor.send(visitor.message('TEXT', 'anyone?'));
    await visitor.until(() => visitor.queueErrors.length > 0, 'closed refusal');
    assert.match(visitor.queueErrors.shift()!.error, /is closed/);
  });
});

describe('chat thread lifecycle', () => {
  it('auto-closes idle threads with an AUTO_CLOSED message, and checks creation input', async () => {
    const clock = new ManualClock(Date.now());
    const s = await startServer({ threadIdleCloseSeconds: 60 }, clock);
    const admin = await login(s.url);
    const c = await api(s.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'shop/9', members: [{ user: 'admin', role: 'agent' }] } });
    assert.equal(c.status, 200);
    assert.equal((await api(s.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'shop/9' } })).status, 409);
    assert.equal((await api(s.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'shop/#' } })).status, 400);
    assert.equal((await api(s.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'x', members: [{ user: 'a', role: 'boss' }] } })).status, 400);
    clock.advance(61_000);
    assert.equal(await s.server.threads.closeIdle(), 1);
    const history = await api<ChatMessage[]>(s.url, 'GET', '/api/v1/thread/shop.9/messages', { token: admin });
    assert.equal(history.body.data.at(-1)?.type, 'AUTO_CLOSED');
    const t = await api<{ status: string }>(s.url, 'GET', '/api/v1/thread/shop.9', { token: admin });
    assert.equal(t.body.data.status, 'CLOSED');
    assert.equal((await api(s.url, 'GET', '/api/v1/thread/nope/messages', { token: admin })).status, 404);
    assert.equal((await api(s.url, 'GET', '/api/v1/thread/shop.9/messages?limit=0', { token: admin })).status, 400);
    await s.stop();
  });
});
