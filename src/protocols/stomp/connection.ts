/**
 * One STOMP connection (over WebSocket or TCP): frames in, core calls out,
 * MESSAGE frames back. Holds the protocol state: negotiated version,
 * heart-beats, subscriptions with their ack windows, transactions.
 *
 * Frames are handled strictly in arrival order; a frame whose handling waits
 * (CONNECT's authentication, a queue SEND's disk write) holds back the
 * frames behind it.
 */
import { isUtf8 } from 'node:buffer';
import { HERALD_VERSION } from '../../version.js';
import type { HeraldContext } from '../../context.js';
import { AuthError, type Principal } from '../../core/auth.js';
import { AppForbidden, AppRefusal, type Broker, type Consumer, type Delivery, type Outcome } from '../../core/broker.js';
import { parseDestination, topicProblem, topicToDotted } from '../../core/destination.js';
import { isSelf, resolveUserId } from '../../core/mailbox.js';
import { createMessage, type CoreMessage, type HeaderList, type Target } from '../../core/message.js';
import { newSessionId, wsCloseCode, type CloseReason, type Protocol, type Session } from '../../core/session.js';
import { storeUnavailable, type StoreUnavailableError } from '../../store/store.js';
import { PublishPermissions, sessionSubject, type AclSubject } from '../../core/acl.js';
import { TokenBucket } from '../../core/rate-limit.js';
import { pinnedSize } from '../../core/delivery-budget.js';
import { DeliveryWindow, type HeldQueue } from '../../core/delivery-window.js';
import { systemClock } from '../../clock.js';
import type { Admission } from '../../transports/admission.js';
import type { ByteTransport } from '../../transports/byte-transport.js';
import {
  encodeFrame,
  header,
  HEARTBEAT,
  StompParser,
  StompSyntaxError,
  type ParseEvent,
  type StompFrame,
} from './codec.js';

type Version = '1.0' | '1.1' | '1.2';
const VERSIONS: readonly Version[] = ['1.2', '1.1', '1.0'];
type AckMode = 'auto' | 'client' | 'client-individual';

/**
 * Headers the protocol owns. A SEND's other headers travel with the message;
 * these never do, and a MESSAGE never takes them from a message's headers
 * (MQTT 5 user properties, HTTP publish headers): a `content-length` or
 * `message-id` from there would let a publisher forge frames. Compared after
 * trimming, as lenient clients trim names.
 */
const RESERVED = new Set([
  'destination',
  'content-length',
  'content-type',
  'receipt',
  'receipt-id',
  'transaction',
  'message-id',
  'subscription',
  'ack',
  'redelivered',
  'id',
  'version',
  'heart-beat',
  'session',
  'server',
]);

/** Raised while handling a frame: becomes an ERROR frame, then the connection closes. */
class StompError extends Error {
  constructor(
    message: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}

interface Unacked {
  msg: CoreMessage;
  delivery: Delivery;
  /** What it counts against the connection's byte budget. */
  bytes: number;
}

interface Held {
  msg: CoreMessage;
  delivery: Delivery;
  bytes: number;
}

class StompSubscription implements Consumer {
  readonly unacked = new Map<string, Unacked>();
  /** Messages waiting for the client's window to open (topics and mailboxes), oldest first. */
  readonly held: HeldQueue<Held>;
  /** Key under which this subscription's MESSAGE frames are cached on a message. */
  readonly cacheKey: string;
  private recheck: NodeJS.Timeout | undefined;

  constructor(
    readonly conn: StompConnection,
    readonly id: string,
    /** Destination as the client wrote it. */
    readonly destination: string,
    readonly target: Target,
    readonly ackMode: AckMode,
  ) {
    this.held = conn.window.queue(conn.limits.maxHeld);
    const destPart = target.kind === 'user' ? destination : '';
    this.cacheKey = `stomp\u0000${conn.framing}\u0000${conn.version}\u0000${ackMode === 'auto' ? 'a' : 'c'}\u0000${id}\u0000${destPart}`;
  }

  get sessionId(): string {
    return this.conn.id;
  }
  get principal(): Principal {
    return this.conn.principal;
  }

  /** Whether the window has room: in messages for this subscription, in bytes for the whole connection. */
  windowOpen(): boolean {
    return this.unacked.size < this.conn.limits.maxUnacked && this.conn.window.mayFly();
  }

  hasCapacity(): boolean {
    return this.ackMode === 'auto' ? this.conn.writable() : this.windowOpen() && this.conn.writable();
  }

  deliver(msg: CoreMessage, delivery: Delivery): void {
    if (this.conn.closed) {
      delivery.settle?.('requeue');
      return;
    }
    if (this.ackMode !== 'auto') {
      const offer = this.conn.window.offer(this.held, { msg, delivery, bytes: pinnedSize(msg) }, this.windowOpen());
      if (offer === 'held') return;
      if (offer !== 'send') {
        this.conn.ctx.metrics.protocolErrors.inc({ protocol: this.conn.protocol, reason: 'slow_consumer' });
        this.conn.fail(
          'slow consumer',
          offer.over === 'messages'
            ? `subscription ${this.id} has ${offer.held} messages waiting for acknowledgements; acknowledge faster or use ack:auto`
            : offer.reason,
        );
        return;
      }
    }
    this.write(msg, delivery);
  }

  /** Writes a message now: acknowledged at once in `auto` mode, else in flight until ACK/NACK. */
  write(msg: CoreMessage, delivery: Delivery): void {
    if (this.ackMode === 'auto') {
      this.conn.sendMessage(this, msg, delivery.redelivered);
      delivery.settle?.('ack');
      // A queue stops feeding a client whose socket is backed up; look again once it had time to drain.
      if (this.target.kind === 'queue' && !this.conn.writable() && !this.recheck) {
        this.recheck = setTimeout(() => {
          this.recheck = undefined;
          if (!this.conn.closed) this.conn.broker.consumerReady(this);
        }, 50);
      }
      return;
    }
    const ackId = `${msg.id}:${this.id}`;
    // Recorded before the write: a write that finds the client too slow closes the connection, which
    // gives back whatever is unacknowledged, this message included.
    const entry: Unacked = { msg, delivery, bytes: pinnedSize(msg) };
    this.unacked.set(ackId, entry);
    this.conn.window.budget.fly(entry.bytes);
    // The message stays alive until acknowledged, and so does the frame this connection encoded for it.
    const encoded = this.conn.sendMessage(this, msg, delivery.redelivered);
    if (encoded > 0 && !this.conn.closed) {
      entry.bytes += encoded;
      this.conn.window.budget.fly(encoded);
    }
  }

  /** ACK/NACK of `ackId`; cumulative in `client` mode. Returns false when unknown. */
  settle(ackId: string, outcome: Outcome): boolean {
    const entry = this.unacked.get(ackId);
    if (!entry) return false;
    if (this.ackMode === 'client') {
      for (const [k, u] of this.unacked) {
        this.unacked.delete(k);
        this.conn.window.budget.land(u.bytes);
        u.delivery.settle?.(outcome);
        if (k === ackId) break;
      }
    } else {
      this.unacked.delete(ackId);
      this.conn.window.budget.land(entry.bytes);
      entry.delivery.settle?.(outcome);
    }
    return true;
  }

  /** Sends held messages while the window has room; a queue is told when this consumer can take more. */
  drainHeld(): void {
    this.conn.window.drain([this.held], () => this.mayDrain(), (h) => this.write(h.msg, h.delivery));
    this.tellQueue();
  }

  /** Whether a held message may go out now. */
  mayDrain(): boolean {
    return this.windowOpen() && !this.conn.closed;
  }

  /** A queue consumer may have room again: the queue looks. */
  tellQueue(): void {
    if (this.target.kind === 'queue' && !this.conn.closed) this.conn.broker.consumerReady(this);
  }

  /** The subscription ends: whatever the client did not acknowledge goes back. */
  release(): void {
    clearTimeout(this.recheck);
    for (const u of this.unacked.values()) {
      this.conn.window.budget.land(u.bytes);
      u.delivery.settle?.('requeue');
    }
    this.unacked.clear();
    this.conn.window.release(this.held);
  }
}

export interface StompLimits {
  maxUnacked: number;
  maxHeld: number;
  maxSubscriptions: number;
  maxConnectionsPerUser: number;
  heartbeatMs: number;
  publishRate: number;
  /** Bytes of received frames waiting to be handled before reading pauses. */
  maxInboxBytes: number;
  /** Bytes of frames all open transactions of a connection may hold until COMMIT. */
  maxTransactionBytes: number;
}

export class StompConnection implements Session {
  readonly id: string;
  principal!: Principal;
  readonly connectedAt: number;
  version: Version = '1.2';
  closed = false;
  readonly limits: StompLimits;
  readonly broker: Broker;

  private state: 'awaiting-connect' | 'connected' | 'closing' = 'awaiting-connect';
  private readonly parser: StompParser;
  private readonly subscriptions = new Map<string, StompSubscription>();
  private readonly transactions = new Map<string, StompFrame[]>();
  /** Bytes of the frames held in open transactions (with an allowance per transaction). */
  private transactionBytes = 0;
  private readonly inbox: StompFrame[] = [];
  /** Bytes of the frames in `inbox`: reading pauses past maxInboxBytes, whatever their count. */
  private inboxBytes = 0;
  private busy = false;
  private lastRead = Date.now();
  private lastWrite = Date.now();
  private sendTimer: NodeJS.Timeout | undefined;
  private readTimer: NodeJS.Timeout | undefined;
  private readonly bucket: TokenBucket;
  private registered = false;
  private paused = false;
  private readonly delivered: { inc(): void };
  private readonly publishAcl: PublishPermissions;
  /** The delivery policy: bytes this connection pins (unacknowledged or waiting), shared by its subscriptions; its socket backlog. */
  readonly window: DeliveryWindow;

  constructor(
    readonly ctx: HeraldContext,
    private readonly transport: ByteTransport,
    readonly protocol: Protocol,
    readonly remoteAddress: string,
    readonly device: string,
    /** Authenticated at the WebSocket handshake (`__token`), if so. */
    private readonly handshakePrincipal: Principal | undefined,
    /** Pre-authentication limits (time to CONNECT, bytes before it); told when CONNECT succeeds. */
    private readonly admission: Admission,
    /**
     * Whether use of this connection keeps its login token alive: CONNECT and
     * each SEND renew it as an HTTP call does (heart-beats do not). Off on
     * `/v1/ws`, where the token lives by HTTP calls only.
     */
    private readonly renewOnUse: boolean,
  ) {
    this.id = newSessionId('stomp');
    this.connectedAt = ctx.clock.now();
    this.broker = ctx.broker;
    const c = ctx.config;
    this.limits = {
      maxUnacked: c.maxUnackedPerSubscription,
      maxHeld: Math.max(1000, c.maxUnackedPerSubscription * 10),
      maxSubscriptions: c.maxSubscriptionsPerConnection,
      maxConnectionsPerUser: c.maxConnectionsPerUser,
      heartbeatMs: c.stompHeartbeatMs,
      publishRate: c.publishRatePerSecond,
      maxInboxBytes: 4 * c.maxBodyBytes,
      maxTransactionBytes: c.maxHeldBytesPerConnection,
    };
    this.window = new DeliveryWindow({ maxHeldBytes: c.maxHeldBytesPerConnection, maxBufferedBytes: c.slowConsumerBytes });
    this.bucket = new TokenBucket(this.limits.publishRate, systemClock);
    this.delivered = ctx.metrics.messagesOut.labels(protocol);
    this.publishAcl = new PublishPermissions(ctx.acl, () => this.aclSubject());
    this.parser = new StompParser({
      maxHeaderBytes: c.stompMaxHeaderBytes,
      maxHeaders: c.stompMaxHeaders,
      maxBodyBytes: c.maxBodyBytes,
    });
    // A client that never completes CONNECT in time, or sends too much before it, is told and dropped.
    admission.onLimit = (reason) => this.fail('not connected', reason);
  }

  // ---- input -----------------------------------------------------------------

  /** Bytes from the transport (a WebSocket message or a TCP chunk). */
  receive(data: Buffer): void {
    if (this.closed || this.state === 'closing') return;
    this.lastRead = Date.now();
    try {
      this.parser.feed(data, this.onParse);
    } catch (err) {
      if (err instanceof StompSyntaxError) {
        this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'syntax' });
        this.sendError(err.message, undefined, err.receipt);
        this.shutdown(1002, 'protocol error');
        return;
      }
      throw err;
    }
  }

  private readonly onParse = (ev: ParseEvent): void => {
    if (ev.type === 'heartbeat') return;
    this.inbox.push(ev.frame);
    this.inboxBytes += frameSize(ev.frame);
    if ((this.inbox.length > 1000 || this.inboxBytes > this.limits.maxInboxBytes) && !this.paused) {
      this.paused = true;
      this.transport.pause();
    }
    if (!this.busy) void this.drainInbox();
  };

  private async drainInbox(): Promise<void> {
    this.busy = true;
    while (this.inbox.length > 0 && !this.closed && this.state !== 'closing') {
      const frame = this.inbox.shift()!;
      this.inboxBytes -= frameSize(frame);
      // The CONNECT frame negotiates the version, which decides header escaping for what follows.
      try {
        const r = this.handle(frame);
        if (r) await r;
      } catch (err) {
        let down: StoreUnavailableError | undefined;
        if (err instanceof StompError) {
          this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'frame' });
          this.sendError(err.message, err.detail, header(frame, 'receipt'));
          this.shutdown(1002, 'protocol error');
        } else if ((down = storeUnavailable(err))) {
          // No RECEIPT for what could not be stored: the client knows to send it again.
          this.ctx.log.warn({ err: down.message, command: frame.command, session: this.id }, 'store unavailable; frame refused');
          this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'store_unavailable' });
          this.sendError('service unavailable', `the message store is unavailable, so this ${frame.command} was not carried out; connect again and repeat it later`, header(frame, 'receipt'));
          this.shutdown(1013, 'store unavailable');
        } else {
          this.ctx.log.error({ err, command: frame.command, session: this.id }, 'STOMP frame handling failed');
          this.sendError('internal error', 'the server could not handle this frame; the server log has the details', header(frame, 'receipt'));
          this.shutdown(1011, 'internal error');
        }
        break;
      }
    }
    this.busy = false;
    if (this.paused && this.inbox.length < 100 && this.inboxBytes <= this.limits.maxInboxBytes / 4 && !this.closed) {
      this.paused = false;
      this.transport.resume();
    }
  }

  private handle(frame: StompFrame): void | Promise<void> {
    const cmd = frame.command;
    if (this.state === 'awaiting-connect') {
      if (cmd === 'CONNECT' || cmd === 'STOMP') return this.onConnect(frame);
      throw new StompError(`${cmd} before CONNECT`, 'the first frame on a connection must be CONNECT (or STOMP)');
    }
    switch (cmd) {
      case 'SEND':
        return this.inTransaction(frame) ? undefined : this.onSend(frame);
      case 'SUBSCRIBE':
        return this.onSubscribe(frame);
      case 'UNSUBSCRIBE':
        return this.onUnsubscribe(frame);
      case 'ACK':
      case 'NACK':
        return this.inTransaction(frame) ? undefined : this.onAck(frame);
      case 'BEGIN':
        return this.onBegin(frame);
      case 'COMMIT':
        return this.onCommit(frame);
      case 'ABORT':
        return this.onAbort(frame);
      case 'DISCONNECT':
        return this.onDisconnect(frame);
      case 'CONNECT':
      case 'STOMP':
        throw new StompError('already connected', 'a connection sends CONNECT once');
      default:
        throw new StompError(`unknown command "${cmd.slice(0, 32)}"`, 'STOMP commands are SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, BEGIN, COMMIT, ABORT, DISCONNECT');
    }
  }

  // ---- CONNECT -------------------------------------------------------------------

  private async onConnect(frame: StompFrame): Promise<void> {
    const accept = (header(frame, 'accept-version') ?? '1.0').split(',').map((v) => v.trim());
    const version = VERSIONS.find((v) => accept.includes(v));
    if (!version) {
      this.sendRaw(
        encodeFrame('ERROR', [['version', '1.0,1.1,1.2'], ['content-type', 'text/plain'], ['message', 'unsupported STOMP version']], `this server speaks STOMP 1.0, 1.1 and 1.2; the client offered ${accept.join(',')}`, false),
      );
      this.shutdown(1002, 'unsupported version');
      return;
    }
    this.version = version;
    this.parser.escaping = version !== '1.0';

    let principal = this.handshakePrincipal;
    if (!principal) {
      const login = header(frame, 'login');
      const passcode = header(frame, 'passcode');
      try {
        if (login && passcode) {
          // A token in passcode (any login), else a user name with its password. The token is tried
          // first: it is cheap, and a token must never count as a failed password login.
          try {
            principal = await this.ctx.auth.authenticate(passcode, { renew: this.renewOnUse });
          } catch (err) {
            if (!(err instanceof AuthError) || err.code !== 'invalid_token') throw err;
            const user = await this.ctx.auth.checkPassword(login, passcode, this.remoteAddress);
            principal = { userId: user.id, name: user.name, role: user.role, credential: { kind: 'password' } };
          }
        } else if (login || passcode) {
          // A token on its own: a refused one counts against this address (tokenFailuresPerAddress).
          principal = await this.ctx.auth.authenticate((login || passcode)!, { renew: this.renewOnUse, address: this.remoteAddress });
        } else {
          throw new AuthError('invalid_token', 'no credentials: pass a token as __token in the URL, or login/passcode in CONNECT');
        }
      } catch (err) {
        if (!(err instanceof AuthError)) throw err;
        this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'auth' });
        const message = err.code === 'token_expired' ? 'token expired' : err.code === 'rate_limited' ? 'too many failed logins' : 'authentication failed';
        this.sendError(message, err.message, header(frame, 'receipt'));
        this.shutdown(err.code === 'token_expired' ? 4401 : 4403, message);
        return;
      }
    }
    if (this.closed) return;
    if (this.ctx.sessions.ofUser(principal.userId).size >= this.limits.maxConnectionsPerUser) {
      this.sendError('too many connections', `user "${principal.name}" already has ${this.limits.maxConnectionsPerUser} connections open (maxConnectionsPerUser)`, header(frame, 'receipt'));
      this.shutdown(1008, 'too many connections');
      return;
    }
    this.principal = principal;
    this.ctx.sessions.add(this);
    this.registered = true;
    this.admission.authenticated();

    // Heart-beats: cx,cy from the client; the server offers sx = sy = heartbeatMs.
    const [cx, cy] = (header(frame, 'heart-beat') ?? '0,0').split(',').map((n) => Number.parseInt(n, 10));
    const hb = this.limits.heartbeatMs;
    const sendEvery = version === '1.0' || !cy || !hb ? 0 : Math.max(hb, cy);
    const expectEvery = version === '1.0' || !cx || !hb ? 0 : Math.max(hb, cx);
    clearTimeout(this.readTimer);
    this.readTimer = undefined;
    this.startHeartbeats(sendEvery, expectEvery);

    const headers: HeaderList = [
      ['version', version],
      ['heart-beat', `${version === '1.0' ? 0 : hb},${version === '1.0' ? 0 : hb}`],
      ['server', 'Herald/' + HERALD_VERSION],
      ['session', this.id],
      ['user-name', principal.name],
    ];
    this.state = 'connected';
    this.sendRaw(encodeFrame('CONNECTED', headers, undefined, false));
    this.receipt(frame);
  }

  private startHeartbeats(sendEvery: number, expectEvery: number): void {
    if (sendEvery > 0) {
      this.sendTimer = setInterval(() => {
        if (Date.now() - this.lastWrite >= sendEvery * 0.9) this.sendRaw(HEARTBEAT);
      }, sendEvery);
      this.sendTimer.unref();
    }
    if (expectEvery > 0) {
      const grace = Math.max(2000, expectEvery / 2);
      this.readTimer = setInterval(() => {
        const silent = Date.now() - this.lastRead;
        if (silent > expectEvery + grace) {
          this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'heartbeat' });
          this.fail('heart-beat timeout', `nothing received for ${silent} ms; the negotiated heart-beat was ${expectEvery} ms`);
        }
      }, Math.min(expectEvery, 5000));
      this.readTimer.unref();
    }
  }

  // ---- SEND ------------------------------------------------------------------

  private async onSend(frame: StompFrame): Promise<void> {
    let wait = this.bucket.take();
    if (wait > 0) {
      // Too fast: stop reading from this client until it may publish again.
      this.transport.pause();
      do await new Promise((r) => setTimeout(r, wait));
      while ((wait = this.bucket.take()) > 0);
      if (!this.paused) this.transport.resume();
    }
    const dest = header(frame, 'destination');
    if (!dest) throw new StompError('SEND needs a destination header', 'add destination:/topic/…, /queue/…, /user/…/queue/… or /app/…');
    const parsed = parseDestination(dest);
    if (typeof parsed === 'string') throw new StompError('invalid destination', parsed);
    // Sending is use: a chat visitor on /stomp is not logged out while chatting (heart-beats do not count).
    if (this.renewOnUse) this.ctx.auth.renewPrincipal(this.principal);
    this.ctx.metrics.messagesIn.inc({ protocol: this.protocol });
    const contentType = header(frame, 'content-type');
    const headers = customHeaders(frame);
    const base = { body: frame.body, contentType, headers, publisherSession: this.id };
    switch (parsed.kind) {
      case 'topic': {
        const problem = topicProblem(parsed.topic);
        if (problem) throw new StompError('invalid destination', `${dest}: ${problem}`);
        // Topics the server writes itself ($SYS, chat threads) are refused to every client, before the access rules.
        let refusal = this.broker.publishRefusal(parsed.topic);
        if (refusal instanceof Promise) refusal = await refusal;
        if (refusal !== undefined) {
          this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'server_topic' });
          throw new StompError('not allowed', refusal);
        }
        if (!this.publishAcl.allows(parsed.topic)) {
          this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'acl_denied' });
          throw new StompError('not allowed', `the access rules (aclFile) do not let "${this.principal.name}" publish to ${dest}`);
        }
        this.broker.publishTopic(createMessage({ ...base, target: { kind: 'topic', topic: parsed.topic } }));
        break;
      }
      case 'queue':
        await this.broker.publishQueue(createMessage({ ...base, target: { kind: 'queue', name: parsed.name } }));
        break;
      case 'user': {
        let userId = this.principal.userId;
        if (parsed.who !== null && !isSelf(this.principal, parsed.who)) {
          const role = this.principal.role;
          if (role === 'user' && !this.ctx.config.userSendToOthers) {
            throw new StompError('not allowed', `sending to another user's mailbox (${dest}) needs the service or admin role`);
          }
          userId = await resolveUserId(this.ctx.store, this.ctx.auth, parsed.who);
        }
        this.broker.publishUser(createMessage({ ...base, target: { kind: 'user', userId, name: parsed.name } }));
        break;
      }
      case 'server': {
        const handler = this.broker.findApp(dest);
        if (!handler) throw new StompError('no handler', `nothing on this server handles ${dest}`);
        try {
          await handler({ sessionId: this.id, principal: this.principal, destination: dest, ...base });
        } catch (err) {
          if (err instanceof AppForbidden) throw new StompError('not allowed', err.message);
          if (!(err instanceof AppRefusal)) throw err;
          this.reportToSender(dest, err.message, header(frame, 'receipt'));
        }
        break;
      }
    }
    this.receipt(frame);
  }

  /** Business-rule errors go to the sender's `/user/queue/errors`; the connection stays up. */
  private reportToSender(destination: string, message: string, receipt: string | undefined): void {
    const body = Buffer.from(JSON.stringify({ error: message, destination, ...(receipt ? { receipt } : {}) }));
    this.broker.publishUser(
      createMessage({ target: { kind: 'user', userId: this.principal.userId, name: 'errors' }, body, contentType: 'application/json' }),
    );
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE -----------------------------------------------------

  private async onSubscribe(frame: StompFrame): Promise<void> {
    const dest = header(frame, 'destination');
    if (!dest) throw new StompError('SUBSCRIBE needs a destination header');
    const id = header(frame, 'id') ?? (this.version === '1.0' ? dest : undefined);
    if (id === undefined) throw new StompError('SUBSCRIBE needs an id header', 'STOMP 1.1 and 1.2 subscriptions carry a unique id');
    if (this.subscriptions.has(id)) throw new StompError(`subscription id "${id}" is already in use on this connection`);
    if (this.subscriptions.size >= this.limits.maxSubscriptions) {
      throw new StompError('too many subscriptions', `this connection already has ${this.limits.maxSubscriptions} (maxSubscriptionsPerConnection)`);
    }
    const ack = header(frame, 'ack') ?? 'auto';
    if (ack !== 'auto' && ack !== 'client' && ack !== 'client-individual') {
      throw new StompError(`invalid ack mode "${ack}"`, 'ack is auto, client or client-individual');
    }
    const parsed = parseDestination(dest);
    if (typeof parsed === 'string') throw new StompError('invalid destination', parsed);
    let target: Target;
    switch (parsed.kind) {
      case 'topic': {
        if (!this.ctx.acl.allows(this.aclSubject(), 'subscribe', parsed.topic)) {
          this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'acl_denied' });
          throw new StompError('not allowed', `the access rules (aclFile) do not let "${this.principal.name}" subscribe to ${dest}`);
        }
        const refusal = await this.broker.authorizeTopic(this.principal, parsed.topic);
        if (refusal) throw new StompError('not allowed', refusal);
        target = { kind: 'topic', topic: parsed.topic };
        break;
      }
      case 'queue':
        target = { kind: 'queue', name: parsed.name };
        break;
      case 'user':
        if (parsed.who !== null && !isSelf(this.principal, parsed.who)) {
          throw new StompError('not allowed', `${dest} is another user's queue; subscribe to /user/queue/${parsed.name} for your own`);
        }
        target = { kind: 'user', userId: this.principal.userId, name: parsed.name };
        break;
      case 'server':
        throw new StompError('cannot subscribe', `${dest} is handled by the server: SEND to it, do not SUBSCRIBE`);
    }
    const sub = new StompSubscription(this, id, dest, target, ack);
    this.subscriptions.set(id, sub);
    // RECEIPT before any message, so a client waiting for it sees the subscription live.
    this.receipt(frame);
    switch (target.kind) {
      case 'topic': {
        // `since:<last message id or time>` recovers what a reconnecting client missed (chat threads).
        const since = header(frame, 'since');
        this.broker.subscribeTopic(target.topic, sub, since ? { principal: this.principal, position: since } : undefined);
        break;
      }
      case 'queue':
        this.broker.subscribeQueue(target.name, sub);
        break;
      case 'user':
        this.broker.subscribeUser(target.userId, target.name, sub);
        break;
    }
  }

  /**
   * The byte budget reopened: held messages of every subscription go out,
   * oldest first across them all, while there is room (a subscription whose
   * own window is full is passed over), and queues are told to look again.
   */
  private drainAll(): void {
    const byQueue = new Map<HeldQueue<Held>, StompSubscription>();
    for (const sub of this.subscriptions.values()) if (sub.held.length > 0) byQueue.set(sub.held, sub);
    this.window.drain(
      byQueue.keys(),
      (q) => byQueue.get(q)!.mayDrain(),
      (h, q) => byQueue.get(q)!.write(h.msg, h.delivery),
    );
    for (const sub of this.subscriptions.values()) sub.tellQueue();
  }

  /** Bytes received and not yet handled: frames waiting in order, and the part of a frame still coming in. */
  get pendingInput(): number {
    return this.inboxBytes + this.parser.buffered;
  }

  stats(): { subscriptions: number; unacked: number } {
    let unacked = 0;
    for (const s of this.subscriptions.values()) unacked += s.unacked.size;
    return { subscriptions: this.subscriptions.size, unacked };
  }

  private aclSubject(): AclSubject {
    return sessionSubject(this.principal, this.device);
  }

  private removeSubscription(sub: StompSubscription): void {
    this.subscriptions.delete(sub.id);
    const t = sub.target;
    if (t.kind === 'topic') this.broker.unsubscribeTopic(t.topic, sub);
    else if (t.kind === 'queue') this.broker.unsubscribeQueue(t.name, sub);
    else this.broker.unsubscribeUser(t.userId, t.name, sub);
    sub.release();
  }

  private onUnsubscribe(frame: StompFrame): void {
    const id = header(frame, 'id') ?? (this.version === '1.0' ? header(frame, 'destination') : undefined);
    if (id === undefined) throw new StompError('UNSUBSCRIBE needs an id header');
    const sub = this.subscriptions.get(id);
    if (!sub) throw new StompError(`no subscription with id "${id}"`);
    const budgetWasFull = !this.window.mayFly();
    this.removeSubscription(sub);
    // What it had in flight no longer counts: the others may send again.
    if (budgetWasFull && this.window.mayFly()) this.drainAll();
    this.receipt(frame);
  }

  // ---- ACK / NACK -----------------------------------------------------------------

  private onAck(frame: StompFrame): void {
    const outcome: Outcome = frame.command === 'ACK' ? 'ack' : 'nack';
    const budgetWasFull = !this.window.mayFly();
    const settled: StompSubscription[] = [];
    if (this.version === '1.2') {
      const id = header(frame, 'id');
      if (id === undefined) throw new StompError(`${frame.command} needs an id header`, 'use the value of the ack header of the MESSAGE');
      for (const sub of this.subscriptions.values()) if (sub.settle(id, outcome)) settled.push(sub);
      if (settled.length === 0) throw new StompError(`${frame.command} for unknown id "${id}"`, 'no unacknowledged message has that ack id on this connection');
    } else {
      const mid = header(frame, 'message-id');
      if (mid === undefined) throw new StompError(`${frame.command} needs a message-id header`);
      const subId = header(frame, 'subscription');
      const subs = subId !== undefined ? [this.subscriptions.get(subId)] : [...this.subscriptions.values()];
      for (const sub of subs) if (sub?.settle(`${mid}:${sub.id}`, outcome)) settled.push(sub);
      if (settled.length === 0) throw new StompError(`${frame.command} for unknown message-id "${mid}"`, 'no unacknowledged message has that id on this connection');
    }
    // The byte budget is the connection's: when this ACK reopens it, every subscription may send again.
    if (budgetWasFull && this.window.mayFly()) this.drainAll();
    else for (const sub of settled) sub.drainHeld();
    this.receipt(frame);
  }

  // ---- transactions -------------------------------------------------------------

  /** Holds a SEND/ACK/NACK that names a transaction until COMMIT; false when it names none. */
  private inTransaction(frame: StompFrame): boolean {
    const tx = header(frame, 'transaction');
    if (tx === undefined) return false;
    const list = this.transactions.get(tx);
    if (!list) throw new StompError(`unknown transaction "${tx}"`, 'BEGIN it first');
    this.holdForTransaction(frameSize(frame));
    list.push({ ...frame, headers: frame.headers.filter(([k]) => k !== 'transaction') });
    this.receipt(frame);
    return true;
  }

  /** Frames wait in memory until COMMIT: bounded in bytes like everything else a connection holds. */
  private holdForTransaction(bytes: number): void {
    this.transactionBytes += bytes;
    const max = this.limits.maxTransactionBytes;
    if (this.transactionBytes > max) {
      throw new StompError(
        'transaction too large',
        `open transactions on this connection hold ${this.transactionBytes} bytes of frames; at most ${max} may wait for COMMIT (maxHeldBytesPerConnection)`,
      );
    }
  }

  private onBegin(frame: StompFrame): void {
    const tx = header(frame, 'transaction');
    if (!tx) throw new StompError('BEGIN needs a transaction header');
    if (this.transactions.has(tx)) throw new StompError(`transaction "${tx}" is already open`);
    this.holdForTransaction(TRANSACTION_ALLOWANCE + tx.length);
    this.transactions.set(tx, []);
    this.receipt(frame);
  }

  /** A transaction ends (COMMIT, ABORT): its frames no longer count. */
  private endTransaction(tx: string, list: StompFrame[]): void {
    this.transactions.delete(tx);
    let bytes = TRANSACTION_ALLOWANCE + tx.length;
    for (const f of list) bytes += frameSize(f);
    this.transactionBytes = Math.max(0, this.transactionBytes - bytes);
  }

  private async onCommit(frame: StompFrame): Promise<void> {
    const tx = header(frame, 'transaction');
    if (!tx) throw new StompError('COMMIT needs a transaction header');
    const list = this.transactions.get(tx);
    if (!list) throw new StompError(`unknown transaction "${tx}"`);
    this.endTransaction(tx, list);
    for (const f of list) {
      const r = f.command === 'SEND' ? this.onSend(stripReceipt(f)) : this.onAck(stripReceipt(f));
      if (r) await r;
    }
    this.receipt(frame);
  }

  private onAbort(frame: StompFrame): void {
    const tx = header(frame, 'transaction');
    if (!tx) throw new StompError('ABORT needs a transaction header');
    const list = this.transactions.get(tx);
    if (!list) throw new StompError(`unknown transaction "${tx}"`);
    this.endTransaction(tx, list);
    this.receipt(frame);
  }

  private onDisconnect(frame: StompFrame): void {
    this.transactions.clear();
    this.transactionBytes = 0;
    this.receipt(frame);
    this.shutdown(1000, 'disconnect');
  }

  // ---- output ---------------------------------------------------------------------

  /** Room to write more without nearing the slow-consumer limit. */
  writable(): boolean {
    return !this.closed && this.window.writable(this.transport.buffered());
  }

  private sendRaw(data: Buffer, text = true): void {
    if (this.closed) return;
    this.writePrepared(this.transport.prepare(data, text));
  }

  private writePrepared(prepared: Buffer): void {
    this.lastWrite = Date.now();
    this.transport.write(prepared);
    if (this.state !== 'closing' && this.window.backedUp(this.transport.buffered())) {
      this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'slow_consumer' });
      this.fail('slow consumer', this.window.describeBacklog());
    }
  }

  /**
   * Writes one MESSAGE frame, encoded once per message for all subscriptions
   * that look alike. Returns the bytes it added to the message's cache of
   * encoded frames (memory that lives as long as the message does).
   */
  sendMessage(sub: StompSubscription, msg: CoreMessage, redelivered: boolean): number {
    if (this.closed) return 0;
    this.delivered.inc();
    if (redelivered) {
      this.sendRaw(encodeMessageFrame(sub, msg, true, this.version), msg.textBody);
      return 0;
    }
    let prepared = msg.encoded.get(sub.cacheKey);
    let added = 0;
    if (!prepared) {
      prepared = this.transport.prepare(encodeMessageFrame(sub, msg, false, this.version), msg.textBody);
      msg.encoded.set(sub.cacheKey, prepared);
      added = prepared.length;
    }
    this.writePrepared(prepared);
    return added;
  }

  private receipt(frame: StompFrame): void {
    const r = header(frame, 'receipt');
    if (r !== undefined) this.sendRaw(encodeFrame('RECEIPT', [['receipt-id', r]], undefined, this.version !== '1.0'));
  }

  private sendError(message: string, detail: string | undefined, receipt: string | undefined): void {
    const headers: HeaderList = [
      ['message', message],
      ['content-type', 'text/plain'],
    ];
    if (receipt !== undefined) headers.push(['receipt-id', receipt]);
    this.sendRaw(encodeFrame('ERROR', headers, detail ?? message, this.version !== '1.0' && this.state !== 'awaiting-connect'));
  }

  /** Sends ERROR with `message` and closes. */
  fail(message: string, detail: string): void {
    this.shutdown(1008, message, { message, detail });
  }

  /**
   * The transport refuses an incoming message larger than it buffers
   * (WebSocket: over the route's maxPayload). Told before the transport
   * closes, so the client gets an ERROR saying why, as on TCP.
   */
  tooLarge(bytes: number, limit: number): void {
    this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'syntax' });
    this.shutdown(1009, 'frame too large', {
      message: 'frame too large',
      detail: `a WebSocket message of ${bytes} bytes is over the ${limit}-byte limit (stompMaxHeaderBytes + maxBodyBytes + 1024); send frames with at most ${this.ctx.config.maxBodyBytes} body bytes (maxBodyBytes)`,
    });
  }

  /** The wire framing (part of the key under which shared frames are cached). */
  get framing(): string {
    return this.transport.framing;
  }

  /** Session.close: the server ends the session (token death, shutdown, kick). */
  close(reason: CloseReason): void {
    const code = wsCloseCode(reason);
    this.shutdown(code, reason.message, { message: reason.message, detail: reason.message });
  }

  /** Closes once: the optional ERROR goes out first (past the slow-consumer check), then the transport closes. */
  private shutdown(code: number, reason: string, error?: { message: string; detail: string }): void {
    if (this.state === 'closing' || this.closed) return;
    this.state = 'closing';
    if (error) this.sendError(error.message, error.detail, undefined);
    this.transport.close(code, reason);
    this.cleanup();
  }

  /** The transport is gone (either side closed it). */
  onTransportClosed(): void {
    this.cleanup();
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sendTimer);
    clearInterval(this.readTimer);
    clearTimeout(this.readTimer);
    for (const sub of [...this.subscriptions.values()]) this.removeSubscription(sub);
    this.window.clear();
    this.transactions.clear();
    this.transactionBytes = 0;
    this.inbox.length = 0;
    this.inboxBytes = 0;
    if (this.registered) this.ctx.sessions.remove(this);
  }
}

function stripReceipt(f: StompFrame): StompFrame {
  return { ...f, headers: f.headers.filter(([k]) => k !== 'receipt') };
}

/**
 * The headers of a SEND that travel with the message: not the protocol's own,
 * the first of repeats, and none holding a NUL (no other protocol can carry
 * one: MQTT strings forbid it, and stomp.js 2.x would end the frame there).
 */
function customHeaders(frame: StompFrame): HeaderList {
  const out: HeaderList = [];
  const seen = new Set<string>();
  for (const [k, v] of frame.headers) {
    const name = k.trim();
    if (RESERVED.has(name) || seen.has(name) || k.includes('\0') || v.includes('\0')) continue;
    seen.add(name);
    out.push([k, v]);
  }
  return out;
}

/** What a transaction pins besides its frames (the map entry, its name). */
const TRANSACTION_ALLOWANCE = 256;

/** Bytes a received frame holds while it waits: its body, its headers, and a fixed allowance. */
function frameSize(f: StompFrame): number {
  let n = 128 + f.command.length + f.body.length;
  for (const [k, v] of f.headers) n += 32 + k.length + v.length;
  return n;
}

function encodeMessageFrame(sub: StompSubscription, msg: CoreMessage, redelivered: boolean, version: Version): Buffer {
  const t = msg.target;
  const destination = t.kind === 'topic' ? '/topic/' + topicToDotted(t.topic) : t.kind === 'queue' ? '/queue/' + t.name : sub.destination;
  const headers: HeaderList = [
    ['subscription', sub.id],
    ['message-id', msg.id],
    ['destination', destination],
  ];
  if (version === '1.2' && sub.ackMode !== 'auto') headers.push(['ack', `${msg.id}:${sub.id}`]);
  if (redelivered) headers.push(['redelivered', 'true']);
  if (msg.contentType) headers.push(['content-type', msg.contentType]);
  if (msg.replyTo) headers.push(['reply-to', msg.replyTo]);
  if (msg.correlation) headers.push(['correlation-id', msg.correlation.toString(isUtf8(msg.correlation) ? 'utf8' : 'base64')]);
  // The message's own headers come from whoever published it (MQTT 5 user properties, HTTP publish):
  // none may take the place of a header this frame owns or already has, whatever its spacing.
  const own = new Set<string>(headers.map(([k]) => k));
  for (const h of msg.headers) {
    const name = h[0].trim();
    if (!RESERVED.has(name) && !own.has(name)) headers.push(h);
  }
  return encodeFrame('MESSAGE', headers, msg.body, version !== '1.0');
}
