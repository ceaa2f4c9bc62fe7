/**
 * The plain JSON WebSocket of the message-center clients (`/websocket/{token}`): one JSON
 * object per WebSocket message each way.
 *
 * Server → client:
 *   {"event":"message","data":{id,title,content,type,sender,createdAt}}   the user's messages ("redelivered":true when sent before)
 *   {"event":"topic","topic":"a.b","data":…}                               subscribed topics
 *   {"event":"ping"} keep-alive, {"event":"pong"} answer to a ping,
 *   {"event":"ok","data":{"action":…}} confirmation, {"event":"error","data":{code,message}}
 * Client → server:
 *   {"action":"ack","id":…} {"action":"read","id":…} {"action":"ping"}
 *   {"action":"subscribe","topic":…} {"action":"unsubscribe","topic":…}
 *   {"action":"publish","topic":…,"data":…}
 */
import type { WebSocket } from 'ws';
import { systemClock } from '../../clock.js';
import type { HeraldContext } from '../../context.js';
import type { Principal } from '../../core/auth.js';
import type { Consumer, Delivery } from '../../core/broker.js';
import { filterProblem, topicFromDotted, topicProblem, topicToDotted } from '../../core/destination.js';
import { createMessage, type CoreMessage } from '../../core/message.js';
import { TokenBucket } from '../../core/rate-limit.js';
import { newSessionId, wsCloseCode, type CloseReason, type Session, type SessionDetail } from '../../core/session.js';
import { webSocketTransport, type ByteTransport } from '../../transports/byte-transport.js';
import { wsFrame } from '../../transports/ws-frame.js';
import { storeUnavailable } from '../../store/store.js';
import { PublishPermissions, sessionSubject, type AclSubject } from '../../core/acl.js';
import { pinnedSize } from '../../core/delivery-budget.js';
import { DeliveryWindow, type HeldQueue } from '../../core/delivery-window.js';
import { jsonDepthProblem } from '../../core/json-depth.js';

/** A user's message waiting for the window to open. */
interface HeldUserMessage {
  msg: CoreMessage;
  delivery: Delivery;
  bytes: number;
}

/** `data` of a topic event: JSON bodies inline, UTF-8 text as a string, other bytes as base64. */
function topicData(msg: CoreMessage): string {
  if (msg.textBody) {
    const text = msg.body.toString('utf8');
    if (msg.contentType?.includes('json')) {
      try {
        JSON.parse(text);
        return text;
      } catch {
        // declared JSON but is not: send it as a string
      }
    }
    return JSON.stringify(text);
  }
  return JSON.stringify(msg.body.toString('base64'));
}

class Subscription implements Consumer {
  constructor(
    readonly conn: JsonConnection,
    readonly kind: 'mailbox' | 'topic',
  ) {}
  get sessionId(): string {
    return this.conn.id;
  }
  get principal(): Principal {
    return this.conn.principal;
  }
  hasCapacity(): boolean {
    return this.conn.writable();
  }
  deliver(msg: CoreMessage, delivery: Delivery): void {
    if (this.kind === 'mailbox') this.conn.deliverMessage(msg, delivery);
    else this.conn.deliverTopic(msg);
  }
}

export class JsonConnection implements Session {
  readonly id = newSessionId('json');
  readonly protocol = 'json-ws' as const;
  readonly connectedAt: number;
  closed = false;

  private readonly mailbox = new Subscription(this, 'mailbox');
  private readonly topics = new Map<string, Subscription>();

  stats(): { subscriptions: number; unacked: number } {
    // The message mailbox is always subscribed.
    return { subscriptions: this.topics.size + 1, unacked: this.unacked.size };
  }
  describe(): SessionDetail {
    const mailbox = { destination: `(the message service's mailbox)`, kind: 'user' as const, key: this.mailboxName, ack: 'client', unacked: this.unacked.size, held: this.held.length };
    const topics = [...this.topics.keys()].map((t) => ({ destination: topicToDotted(t), kind: 'topic' as const, key: t, ack: 'auto' }));
    const { inflightBytes, heldBytes } = this.window.budget;
    const detail = { inflight: { messages: this.unacked.size, bytes: inflightBytes }, held: { messages: this.held.length, bytes: heldBytes } };
    return { subscriptions: [mailbox, ...topics], ...detail, wire: this.transport.wire(), credential: this.principal.credential.kind };
  }
  /** Messages written and not yet acknowledged, by message id, with the bytes each pins. */
  private readonly unacked = new Map<string, { delivery: Delivery; bytes: number }>();
  /** The delivery policy: unacked and held bytes bounded by maxHeldBytesPerConnection, the socket's backlog by slowConsumerBytes. */
  private readonly window: DeliveryWindow;
  /** Messages waiting for the window (count and bytes) to open, oldest first. */
  private readonly held: HeldQueue<HeldUserMessage>;
  private readonly transport: ByteTransport;
  private readonly bucket: TokenBucket;
  private readonly delivered: { inc(): void };
  private pingTimer: NodeJS.Timeout | undefined;
  private alive = true;
  private ending = false;
  /** Why the session ended, when the server ended it. */
  private endReason: string | undefined;
  private chain: Promise<void> = Promise.resolve();
  private readonly publishAcl: PublishPermissions;

  constructor(
    private readonly ctx: HeraldContext,
    private readonly ws: WebSocket,
    readonly principal: Principal,
    readonly remoteAddress: string,
    readonly device: string,
    /** The user mailbox the message service delivers to (every connection is subscribed to it). */
    private readonly mailboxName: string,
  ) {
    this.connectedAt = ctx.clock.now();
    this.window = new DeliveryWindow({
      maxHeldBytes: ctx.config.maxHeldBytesPerConnection,
      maxBufferedBytes: ctx.config.slowConsumerBytes,
      onCut: ctx.metrics.slowConsumerCounter('json-ws'),
    });
    this.held = this.window.queue(ctx.config.maxUnackedPerSubscription * 10);
    this.transport = webSocketTransport(ws);
    this.bucket = new TokenBucket(ctx.config.publishRatePerSecond, systemClock);
    this.delivered = ctx.metrics.messagesOutOf['json-ws'];
    this.publishAcl = new PublishPermissions(ctx.acl, () => this.aclSubject());
  }

  private aclSubject(): AclSubject {
    return sessionSubject(this.principal, this.device, 'json-ws');
  }

  start(): void {
    this.ctx.sessions.add(this);
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      // Handle in order, one at a time, even when a handler waits for the store.
      this.chain = this.chain.then(() => this.onMessage(data, isBinary)).catch((err: unknown) => {
        const down = storeUnavailable(err);
        if (down) {
          // Nothing was stored; the connection stays, and the client may send the same message again.
          this.ctx.log.warn({ err: down.message, session: this.id }, 'store unavailable; message refused');
          this.sendError('unavailable', 'the message store is unavailable, so this message was not carried out; send it again shortly');
          return;
        }
        this.ctx.log.error({ err, session: this.id }, 'JSON WebSocket message handling failed');
        this.sendError('internal', 'the server could not handle this message; the server log has the details');
      });
    });
    this.ws.on('pong', () => (this.alive = true));
    this.ws.on('close', () => this.cleanup());
    this.ws.on('error', () => this.cleanup());
    const every = this.ctx.config.jsonPingSeconds * 1000;
    if (every > 0) {
      this.pingTimer = setInterval(() => {
        if (!this.alive) {
          this.ctx.metrics.protocolErrors.inc({ protocol: 'json-ws', reason: 'keepalive' });
          this.ws.terminate();
          return;
        }
        this.alive = false;
        this.ws.ping();
        this.sendEvent('{"event":"ping"}');
      }, every);
      this.pingTimer.unref();
    }
    // Subscribing the mailbox replays the user's PENDING messages before live ones.
    this.ctx.broker.subscribeUser(this.principal.userId, this.mailboxName, this.mailbox);
  }

  // ---- output -----------------------------------------------------------------

  writable(): boolean {
    return !this.closed && this.window.writable(this.transport.buffered());
  }

  private write(prepared: Buffer): void {
    if (this.closed) return;
    this.transport.write(prepared);
    if (!this.ending && this.window.backedUp(this.transport.buffered())) {
      this.end('slow_consumer', this.window.describeBacklog(), 1008);
    }
  }

  private sendEvent(json: string): void {
    this.write(wsFrame(Buffer.from(json), true));
  }

  private sendError(code: string, message: string, reconnectAfterMs?: number): void {
    const data = reconnectAfterMs === undefined ? { code, message } : { code, message, reconnectAfterMs };
    this.sendEvent(JSON.stringify({ event: 'error', data }));
  }

  /** Whether one more message may be written unacknowledged: under the count window and the byte budget. */
  private windowOpen(): boolean {
    return this.unacked.size < this.ctx.config.maxUnackedPerSubscription && this.window.mayFly();
  }

  deliverMessage(msg: CoreMessage, delivery: Delivery): void {
    if (this.closed) {
      delivery.settle?.('requeue');
      return;
    }
    const bytes = pinnedSize(msg);
    const offer = this.window.offer(this.held, { msg, delivery, bytes }, this.windowOpen());
    if (offer === 'send') return this.writeMessage(msg, delivery, bytes);
    if (offer === 'held') return;
    const why = offer.over === 'bytes' ? offer.reason : 'too many messages wait for acknowledgements';
    this.end('slow_consumer', `${why}; send {"action":"ack","id":…} for each message`, 1008);
  }

  private writeMessage(msg: CoreMessage, delivery: Delivery, bytes: number): void {
    // Sent before and not acknowledged (nack, a lost connection, a takeover): `"redelivered":true`.
    const encoding = delivery.redelivered ? 'json:message:again' : 'json:message';
    let prepared = msg.encoded.get(encoding);
    if (!prepared) {
      const body = msg.textBody ? msg.body.toString('utf8') : JSON.stringify(msg.body.toString('base64'));
      const again = delivery.redelivered ? '"redelivered":true,' : '';
      prepared = wsFrame(Buffer.from(`{"event":"message",${again}"data":${msg.contentType?.includes('json') ? body : JSON.stringify(body)}}`), true);
      msg.encoded.set(encoding, prepared);
    }
    const key = msg.recordId ?? msg.id;
    const previous = this.unacked.get(key);
    this.unacked.set(key, { delivery, bytes });
    this.window.budget.fly(bytes);
    if (previous) {
      this.window.budget.land(previous.bytes);
      previous.delivery.settle?.('requeue');
    }
    this.delivered.inc();
    this.write(prepared);
  }

  deliverTopic(msg: CoreMessage): void {
    let prepared = msg.encoded.get('json:topic');
    if (!prepared) {
      const topic = JSON.stringify(topicToDotted((msg.target as { topic: string }).topic));
      prepared = wsFrame(Buffer.from(`{"event":"topic","topic":${topic},"data":${topicData(msg)}}`), true);
      msg.encoded.set('json:topic', prepared);
    }
    this.delivered.inc();
    this.write(prepared);
  }

  private drainHeld(): void {
    // Held messages go straight out (not through deliverMessage(), which would queue them behind themselves).
    this.window.drain([this.held], () => this.windowOpen() && !this.closed, (h) => this.writeMessage(h.msg, h.delivery, h.bytes));
  }

  // ---- input ------------------------------------------------------------------

  private async onMessage(data: Buffer, isBinary: boolean): Promise<void> {
    if (this.closed) return;
    this.alive = true;
    if (isBinary) return this.sendError('bad_request', 'send JSON text messages, not binary ones');
    const text = data.toString('utf8');
    // Refused before parsing: a value nested this deep cannot be re-encoded (publish) without overflowing the stack.
    const tooDeep = jsonDepthProblem(text);
    if (tooDeep) return this.sendError('bad_json', `message is not accepted: ${tooDeep}`);
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch (err) {
      return this.sendError('bad_json', `message is not valid JSON: ${(err as Error).message}`);
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      return this.sendError('bad_request', 'each message must be a JSON object with an "action"');
    }
    const f = frame as Record<string, unknown>;
    switch (f['action']) {
      case 'ping':
        return this.sendEvent('{"event":"pong"}');
      case 'ack':
        return this.onAck(f['id'], 'DELIVERED');
      case 'read':
        return this.onAck(f['id'], 'READ');
      case 'subscribe':
        return this.onSubscribe(f['topic']);
      case 'unsubscribe':
        return this.onUnsubscribe(f['topic']);
      case 'publish':
        return this.onPublish(f['topic'], f['data'], 'data' in f);
      case undefined:
        return this.sendError('bad_request', 'message has no "action"; actions are ack, read, ping, subscribe, unsubscribe, publish');
      default:
        return this.sendError('unknown_action', `unknown action ${JSON.stringify(f['action']).slice(0, 64)}; actions are ack, read, ping, subscribe, unsubscribe, publish`);
    }
  }

  private async onAck(rawId: unknown, status: 'DELIVERED' | 'READ'): Promise<void> {
    if ((typeof rawId !== 'string' || rawId === '') && !(typeof rawId === 'number' && Number.isInteger(rawId))) {
      return this.sendError('bad_request', `${status === 'READ' ? 'read' : 'ack'} needs the message "id"`);
    }
    const id = String(rawId);
    const inFlight = this.unacked.get(id);
    const delivery = inFlight?.delivery;
    if (inFlight) {
      this.unacked.delete(id);
      this.window.budget.land(inFlight.bytes);
      inFlight.delivery.settle?.('ack');
      this.drainHeld();
      if (status === 'DELIVERED') return;
    }
    // Not in flight here (acked before, delivered elsewhere, or collected): go to the store.
    const changed = await this.ctx.messages.setStatus(id, this.principal.userId, status);
    if (!changed && !delivery) {
      const m = await this.ctx.store.getMessage(id);
      if (!m?.receivers.some((r) => r.receiver === this.principal.userId)) {
        this.sendError('unknown_message', `no message with id ${id} for you`);
      }
    }
  }

  private topicOf(raw: unknown, forPublish: boolean): string | undefined {
    if (typeof raw !== 'string' || raw === '') {
      this.sendError('bad_request', '"topic" must be a non-empty string such as "news.sport"');
      return undefined;
    }
    const topic = topicFromDotted(raw);
    const problem = forPublish ? topicProblem(topic) : filterProblem(topic);
    if (problem) {
      this.sendError('bad_request', `topic "${raw.slice(0, 100)}": ${problem}`);
      return undefined;
    }
    return topic;
  }

  private async onSubscribe(raw: unknown): Promise<void> {
    const topic = this.topicOf(raw, false);
    if (topic === undefined) return;
    let may = this.publishAcl.checkSubscribe(topic);
    if (may instanceof Promise) may = await may;
    if (!may) {
      return this.sendError('not_allowed', `the access rules do not let "${this.principal.name}" subscribe to ${String(raw).slice(0, 100)}`);
    }
    const refusal = await this.ctx.broker.authorizeTopic(this.principal, topic);
    if (refusal) return this.sendError('not_allowed', refusal);
    if (!this.topics.has(topic)) {
      if (this.topics.size >= this.ctx.config.maxSubscriptionsPerConnection) {
        return this.sendError('too_many_subscriptions', `this connection already has ${this.topics.size} subscriptions (maxSubscriptionsPerConnection)`);
      }
      // In a cluster, `ok` only once every node routes the topic here (a publish anywhere after it is not missed).
      const hold = this.ctx.broker.holdRoute('topic', topic);
      await hold.ready;
      if (this.closed) return hold.release();
      if (!this.topics.has(topic)) {
        const sub = new Subscription(this, 'topic');
        this.topics.set(topic, sub);
        this.ctx.broker.subscribeTopic(topic, sub);
      }
      hold.release();
    }
    this.sendEvent(JSON.stringify({ event: 'ok', data: { action: 'subscribe', topic: raw } }));
  }

  private onUnsubscribe(raw: unknown): void {
    const topic = this.topicOf(raw, false);
    if (topic === undefined) return;
    const sub = this.topics.get(topic);
    if (!sub) return this.sendError('bad_request', `not subscribed to "${String(raw).slice(0, 100)}"`);
    this.topics.delete(topic);
    this.ctx.broker.unsubscribeTopic(topic, sub);
    this.sendEvent(JSON.stringify({ event: 'ok', data: { action: 'unsubscribe', topic: raw } }));
  }

  private async onPublish(raw: unknown, data: unknown, hasData: boolean): Promise<void> {
    const topic = this.topicOf(raw, true);
    if (topic === undefined) return;
    if (!hasData) return this.sendError('bad_request', 'publish needs "data"');
    // `$` topics are the server's and chat-thread topics the thread service's, whatever the access rules say.
    const refusal = await this.ctx.broker.publishRefusal(topic);
    if (refusal) {
      this.ctx.metrics.protocolErrors.inc({ protocol: 'json-ws', reason: 'server_topic' });
      return this.sendError('not_allowed', refusal);
    }
    let may = this.publishAcl.check(topic);
    if (may instanceof Promise) may = await may;
    if (!may) {
      return this.sendError('not_allowed', `the access rules do not let "${this.principal.name}" publish to ${String(raw).slice(0, 100)}`);
    }
    const text = typeof data === 'string' ? data : JSON.stringify(data);
    const body = Buffer.from(text, 'utf8');
    if (body.length > this.ctx.config.maxBodyBytes) {
      return this.sendError('too_large', `data is ${body.length} bytes; the limit is ${this.ctx.config.maxBodyBytes}`);
    }
    let wait = this.bucket.take();
    if (wait > 0) {
      // Too fast: stop reading from this client until it may publish again.
      this.transport.pause();
      do await new Promise((r) => setTimeout(r, wait));
      while ((wait = this.bucket.take()) > 0);
      this.transport.resume();
    }
    this.ctx.metrics.messagesInOf['json-ws'].inc();
    this.ctx.broker.publishTopic(
      createMessage({
        target: { kind: 'topic', topic },
        body,
        contentType: typeof data === 'string' ? 'text/plain' : 'application/json',
        publisherSession: this.id,
      }),
    );
  }

  // ---- ending -------------------------------------------------------------------

  close(reason: CloseReason): void {
    const code = wsCloseCode(reason);
    this.end(reason.code, reason.message, code, reason.reconnectAfterMs);
  }

  private end(code: string, message: string, wsCode: number, reconnectAfterMs?: number): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.endReason = message;
    this.sendError(code, message, reconnectAfterMs);
    this.transport.close(wsCode, message);
    this.cleanup();
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pingTimer);
    this.ctx.broker.unsubscribeUser(this.principal.userId, this.mailboxName, this.mailbox);
    for (const [topic, sub] of this.topics) this.ctx.broker.unsubscribeTopic(topic, sub);
    this.topics.clear();
    for (const { delivery } of this.unacked.values()) delivery.settle?.('requeue');
    this.unacked.clear();
    this.window.release(this.held);
    this.window.clear();
    this.ctx.sessions.remove(this, this.endReason);
  }
}
