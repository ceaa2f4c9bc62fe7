/**
 * What one STOMP connection holds, shared by the frame handlers of this
 * folder: the negotiated version, the principal, subscriptions and
 * transactions, timers and limits; and the writing and ending of the
 * connection. connection.ts reads frames and dispatches them to connect.ts,
 * send.ts, subscriptions.ts and transactions.ts, and completes this class
 * with its clean-up.
 */
import type { HeraldContext } from '../../context.js';
import type { Principal } from '../../core/auth.js';
import type { Broker } from '../../core/broker.js';
import { PublishPermissions, sessionSubject, type AclSubject } from '../../core/acl.js';
import { DeliveryWindow } from '../../core/delivery-window.js';
import type { CoreMessage, HeaderList } from '../../core/message.js';
import { TokenBucket } from '../../core/rate-limit.js';
import { newSessionId, wsCloseCode, type CloseReason, type Protocol, type Session, type SessionDetail } from '../../core/session.js';
import { turnClock, turnNow } from '../../clock.js';
import type { Admission } from '../../transports/admission.js';
import type { ByteTransport } from '../../transports/byte-transport.js';
import type { CertificateIdentity, ConnectionOrigin } from '../../transports/tls.js';
import { encodeFrame, header, StompParser, type ParserLimits, type StompFrame } from './codec.js';
import { preparedMessageFrame, type Version } from './message-frame.js';
import type { StompSubscription } from './subscription.js';

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

/** Bytes a received frame holds while it waits: its body, its headers, and a fixed allowance. */
export function frameSize(f: StompFrame): number {
  let n = 128 + f.command.length + f.body.length;
  for (const [k, v] of f.headers) n += 32 + k.length + v.length;
  return n;
}

/** The MESSAGE frame encoded last, for the message and the kind of subscription it was for (see sendMessage). */
const lastEncoded: { msg: CoreMessage | undefined; key: string; frame: Buffer } = { msg: undefined, key: '', frame: Buffer.alloc(0) };

/** Bounds of a connection's sentTopics: entries, and the longest destination kept. */
const MAX_REMEMBERED_TOPICS = 64;
const MAX_REMEMBERED_DESTINATION = 256;

type Config = HeraldContext['config'];

/**
 * The limits every connection of one configuration shares (the configuration
 * is not reloaded): made once, not per connection.
 */
const sharedLimits = new WeakMap<Config, { stomp: StompLimits; parser: ParserLimits }>();
function limitsOf(c: Config): { stomp: StompLimits; parser: ParserLimits } {
  let l = sharedLimits.get(c);
  if (!l) {
    const stomp: StompLimits = {
      maxUnacked: c.maxUnackedPerSubscription,
      maxHeld: Math.max(1000, c.maxUnackedPerSubscription * 10),
      maxSubscriptions: c.maxSubscriptionsPerConnection,
      maxConnectionsPerUser: c.maxConnectionsPerUser,
      heartbeatMs: c.stompHeartbeatMs,
      publishRate: c.publishRatePerSecond,
      maxInboxBytes: 4 * c.maxBodyBytes,
      maxTransactionBytes: c.maxHeldBytesPerConnection,
    };
    const parser: ParserLimits = { maxHeaderBytes: c.stompMaxHeaderBytes, maxHeaders: c.stompMaxHeaders, maxBodyBytes: c.maxBodyBytes };
    sharedLimits.set(c, (l = { stomp: Object.freeze(stomp), parser: Object.freeze(parser) }));
  }
  return l;
}

/** Why reading from the client stops: the inbound backlog (inbox), the publish rate, or this event-loop iteration's share used up (turn). */
export type ReadPause = 'inbox' | 'rate' | 'turn';
const READ_PAUSE: Record<ReadPause, number> = { inbox: 1, rate: 2, turn: 4 };

/** The defaults of every connection, shared (the listener replaces them, never changes them). */
const NO_CERTIFICATE: CertificateIdentity = Object.freeze({ kind: 'none' });
const TCP_ORIGIN: ConnectionOrigin = Object.freeze({ transport: 'tcp' });

export abstract class StompState implements Session {
  readonly id: string;
  principal!: Principal;
  readonly connectedAt: number;
  version: Version = '1.2';
  closed = false;
  /** Why the session ended, once it has (for the session registry's observers). */
  endReason: string | undefined;
  readonly limits: StompLimits;
  readonly broker: Broker;

  state: 'awaiting-connect' | 'connected' | 'closing' = 'awaiting-connect';
  readonly parser: StompParser;
  // Subscriptions, transactions, the delivery window, the rate bucket and the ACL cache are made
  // on first use: an idle connection never needs them, and empty Maps are most of its memory.
  get subscriptions(): Map<string, StompSubscription> {
    return (this._subscriptions ??= new Map());
  }
  get transactions(): Map<string, StompFrame[]> {
    return (this._transactions ??= new Map());
  }
  /** Bytes of the frames held in open transactions (with an allowance per transaction). */
  transactionBytes = 0;
  lastRead = Date.now();
  lastWrite = Date.now();
  sendTimer: NodeJS.Timeout | undefined;
  readTimer: NodeJS.Timeout | undefined;
  /** Heart-beats the shared sweep sends (every this many ms; 0: none, or a timer of its own) and expects (connect.ts). */
  sweptSendEvery = 0;
  expectEvery = 0;
  /** publishRatePerSecond for SENDs (a bucket starts full, so making it at the first SEND changes nothing). */
  get bucket(): TokenBucket {
    return (this._bucket ??= new TokenBucket(this.limits.publishRate, turnClock));
  }
  registered = false;
  /** tlsClientCertAsUser: the user its verified client certificate names, if any (set by the listener). */
  certificate: CertificateIdentity = NO_CERTIFICATE;
  /** How it reached us (for the connect hook; set by the listener). */
  origin: ConnectionOrigin = TCP_ORIGIN;
  /** Why reading is paused (READ_PAUSE bits): each reason lifts only its own, and reading resumes when none holds. */
  private pausedFor = 0;
  pauseReading(why: ReadPause): void {
    if (this.pausedFor === 0) this.transport.pause();
    this.pausedFor |= READ_PAUSE[why];
  }
  resumeReading(why: ReadPause): void {
    if ((this.pausedFor & READ_PAUSE[why]) === 0) return;
    this.pausedFor &= ~READ_PAUSE[why];
    if (this.pausedFor === 0 && !this.closed) this.transport.resume();
  }
  readingPausedFor(why: ReadPause): boolean {
    return (this.pausedFor & READ_PAUSE[why]) !== 0;
  }
  readonly delivered: { inc(): void };
  get publishAcl(): PublishPermissions {
    return (this._publishAcl ??= new PublishPermissions(this.ctx.acl, () => this.aclSubject()));
  }
  /** The delivery policy: bytes this connection pins (unacknowledged or waiting), shared by its subscriptions; its socket backlog. */
  /**
   * Destinations this connection sent to that are valid topics, with their
   * canonical names: a SEND to one of them is not parsed again. Made on the
   * first SEND to a topic (an idle connection has none); bounded.
   */
  sentTopics: Map<string, string> | undefined;
  get window(): DeliveryWindow {
    const c = this.ctx.config;
    return (this._window ??= new DeliveryWindow({ maxHeldBytes: c.maxHeldBytesPerConnection, maxBufferedBytes: c.slowConsumerBytes, onCut: this.ctx.metrics.slowConsumerCounter(this.protocol) }));
  }
  private _subscriptions: Map<string, StompSubscription> | undefined;
  private _transactions: Map<string, StompFrame[]> | undefined;
  private _bucket: TokenBucket | undefined;
  private _publishAcl: PublishPermissions | undefined;
  private _window: DeliveryWindow | undefined;

  constructor(
    readonly ctx: HeraldContext,
    readonly transport: ByteTransport,
    readonly protocol: Protocol,
    readonly remoteAddress: string,
    readonly device: string,
    /** Authenticated at the WebSocket handshake (`__token`), if so. */
    readonly handshakePrincipal: Principal | undefined,
    /** Pre-authentication limits (time to CONNECT, bytes before it); told when CONNECT succeeds. */
    readonly admission: Admission,
    /**
     * Whether use of this connection keeps its login token alive: CONNECT and
     * each SEND renew it as an HTTP call does (heart-beats do not). Off on
     * `/v1/ws`, where the token lives by HTTP calls only.
     */
    readonly renewOnUse: boolean,
  ) {
    this.id = newSessionId('stomp');
    this.connectedAt = ctx.clock.now();
    this.broker = ctx.broker;
    const limits = limitsOf(ctx.config);
    this.limits = limits.stomp;
    this.delivered = ctx.metrics.messagesOutOf[protocol];
    this.parser = new StompParser(limits.parser);
    // A client that never completes CONNECT in time, or sends too much before it, is told and dropped.
    admission.onLimit = (reason) => this.fail('not connected', reason);
  }

  stats(): { subscriptions: number; unacked: number } {
    let unacked = 0;
    for (const s of this._subscriptions?.values() ?? []) unacked += s.unacked.size;
    return { subscriptions: this._subscriptions?.size ?? 0, unacked };
  }

  describe(): SessionDetail {
    let unacked = 0;
    let held = 0;
    const subscriptions = [...this.subscriptions.values()].map((s) => {
      unacked += s.unacked.size;
      held += s.held.length;
      const t = s.target;
      const key = t.kind === 'topic' ? t.topic : t.name;
      return { destination: s.destination, kind: t.kind, key, ack: s.ackMode, unacked: s.unacked.size, held: s.held.length };
    });
    const budget = this.window.budget;
    return {
      subscriptions,
      inflight: { messages: unacked, bytes: budget.inflightBytes },
      held: { messages: held, bytes: budget.heldBytes },
      wire: this.transport.wire(),
      credential: this.principal.credential.kind,
      version: this.version,
    };
  }

  /** Remembers that `dest` names the valid topic `topic` (see sentTopics). Long names are parsed afresh each time. */
  rememberTopic(dest: string, topic: string): void {
    if (dest.length > MAX_REMEMBERED_DESTINATION) return;
    const known = (this.sentTopics ??= new Map());
    if (known.size >= MAX_REMEMBERED_TOPICS) known.clear();
    known.set(dest, topic);
  }

  aclSubject(): AclSubject {
    return sessionSubject(this.principal, this.device, this.protocol);
  }

  // ---- output ---------------------------------------------------------------------

  /** Room to write more without nearing the slow-consumer limit. */
  writable(): boolean {
    return !this.closed && this.window.writable(this.transport.buffered());
  }

  sendRaw(data: Buffer, text = true): void {
    if (this.closed) return;
    this.writePrepared(this.transport.prepare(data, text));
  }

  writePrepared(prepared: Buffer): void {
    this.lastWrite = turnNow();
    this.transport.write(prepared);
    // The window is only made once the backlog is over its bound (a CONNECTED frame alone never makes it).
    const buffered = this.transport.buffered();
    if (this.state !== 'closing' && buffered > this.ctx.config.slowConsumerBytes && this.window.backedUp(buffered)) {
      this.fail('slow consumer', this.window.describeBacklog());
    }
  }

  /**
   * Writes one MESSAGE frame, encoded once per message for all subscriptions
   * that look alike. Returns the bytes it added to the message's cache of
   * encoded frames (memory that lives as long as the message does).
   *
   * For `auto` subscriptions the frame last encoded is kept aside
   * (`lastEncoded`): the subscribers of a message are served one after the
   * other, so a message with one subscriber (p2p, fan-in), or whose
   * subscribers all look alike, needs no cache on the message at all. Only a
   * second kind of frame for the same message goes into the message's
   * cache. A frame for a client-ack subscription lives as long as the
   * message waits for its ACK, and is counted as such (the return value).
   */
  sendMessage(sub: StompSubscription, msg: CoreMessage, redelivered: boolean): number {
    if (this.closed) return 0;
    this.delivered.inc();
    if (redelivered) {
      this.writePrepared(preparedMessageFrame(sub, msg, true, this.version, this.transport.framing));
      return 0;
    }
    const key = sub.cacheKey;
    if (sub.ackMode === 'auto') {
      // Written and forgotten: nothing stays pinned, so the frame needs no place in the message's cache.
      if (lastEncoded.msg === msg && lastEncoded.key === key) {
        this.writePrepared(lastEncoded.frame);
        return 0;
      }
      const cached = lastEncoded.msg === msg ? msg.encoded.get(key) : undefined;
      if (cached) {
        this.writePrepared(cached);
        return 0;
      }
    }
    let added = 0;
    let prepared = sub.ackMode === 'auto' ? undefined : msg.encoded.get(key);
    if (!prepared) {
      prepared = preparedMessageFrame(sub, msg, false, this.version, this.transport.framing);
      if (sub.ackMode === 'auto' && lastEncoded.msg !== msg) {
        lastEncoded.msg = msg;
        lastEncoded.key = key;
        lastEncoded.frame = prepared;
      } else {
        msg.encoded.set(key, prepared);
        added = prepared.length;
      }
    }
    this.writePrepared(prepared);
    return added;
  }

  receipt(frame: StompFrame): void {
    const r = header(frame, 'receipt');
    if (r !== undefined) this.sendRaw(encodeFrame('RECEIPT', [['receipt-id', r]], undefined, this.version !== '1.0'));
  }

  sendError(message: string, detail: string | undefined, receipt: string | undefined): void {
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
    const detail = reason.reconnectAfterMs === undefined ? reason.message : `${reason.message}; reconnect in ${reason.reconnectAfterMs} ms`;
    this.shutdown(code, reason.message, { message: reason.message, detail });
  }

  /** Closes once: the optional ERROR goes out first (past the slow-consumer check), then the transport closes. */
  shutdown(code: number, reason: string, error?: { message: string; detail: string }): void {
    if (this.state === 'closing' || this.closed) return;
    this.state = 'closing';
    this.endReason ??= error?.message ?? reason;
    if (error) this.sendError(error.message, error.detail, undefined);
    this.transport.close(code, reason);
    this.cleanup();
  }

  /** Ends the session's hold on everything (subscriptions, transactions, timers); once. */
  protected abstract cleanup(): void;
}
