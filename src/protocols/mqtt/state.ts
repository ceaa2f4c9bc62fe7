/**
 * What one MQTT connection holds, shared by the packet handlers of this
 * folder (as aedes' handlers share its `client`): the negotiated version and
 * limits, subscriptions, the outbound window (in flight, held, replayed),
 * inbound QoS 2 and topic aliases, the will; and the writing and ending of
 * the connection. connection.ts dispatches packets to the handlers and
 * completes this class with what needs them (delivery, clean-up).
 */
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';
import { systemClock } from '../../clock.js';
import type { HeraldContext } from '../../context.js';
import type { Principal } from '../../core/auth.js';
import type { Consumer, Delivery } from '../../core/broker.js';
import { PublishPermissions, type AclSubject } from '../../core/acl.js';
import { DeliveryWindow, type HeldQueue } from '../../core/delivery-window.js';
import type { CoreMessage } from '../../core/message.js';
import { TokenBucket } from '../../core/rate-limit.js';
import { newSessionId, type CloseReason, type Protocol, type Session, type SessionDetail } from '../../core/session.js';
import { TopicIndex } from '../../core/router.js';
import type { MqttQueuedRecord } from '../../store/store.js';
import type { Admission } from '../../transports/admission.js';
import type { ByteTransport } from '../../transports/byte-transport.js';
import type { CertificateIdentity, ConnectionOrigin } from '../../transports/tls.js';
import type { SubscriptionIds } from './properties.js';
import { RC, type Refusal, type ReasonCode } from './reason-codes.js';
import type { MqttClient, MqttShared } from './shared.js';

export type Version = 3 | 4 | 5;
export type QoS = 0 | 1 | 2;
/** Why reading from the client stops: packets waiting (inbound), the publish rate, or this event-loop iteration's share used up (turn). */
export type ReadPause = 'inbound' | 'rate' | 'turn';

/** The connection's byte stream (TCP or WebSocket binary frames); `pause` stops reading for the publish rate and inbound backlog. */
export type MqttTransport = ByteTransport;

/** Topic aliases a v5 client may use towards Herald. */
export const INBOUND_ALIASES = 64;

const ACK_COMMANDS: ReadonlySet<string> = new Set(['puback', 'pubrec', 'pubrel', 'pubcomp']);

/** The defaults of every connection, shared (the listener replaces them, never changes them). */
const NO_CERTIFICATE: CertificateIdentity = Object.freeze({ kind: 'none' });
const TCP_ORIGIN: ConnectionOrigin = Object.freeze({ transport: 'tcp' });

/** One subscription of a connection: the broker's consumer, delivering through the connection. */
export class MqttSubscription implements Consumer {
  constructor(
    readonly conn: MqttClientState,
    readonly filter: string,
    readonly qos: QoS,
    readonly noLocal: boolean,
    readonly retainAsPublished: boolean,
    /** Mailbox name for `$user/{name}` subscriptions. */
    readonly mailbox: string | undefined,
    readonly subscriptionId: number | undefined,
    /** Group of a `$share/{group}/{filter}` subscription; `filter` then excludes the prefix. */
    readonly share?: string,
  ) {}

  /** The filter as the client wrote it (the key of the connection's subscription map). */
  get key(): string {
    return this.share !== undefined ? `$share/${this.share}/${this.filter}` : this.mailbox !== undefined ? `$user/${this.mailbox}` : this.filter;
  }
  get sessionId(): string {
    return this.conn.id;
  }
  get principal(): Principal {
    return this.conn.principal;
  }
  hasCapacity(): boolean {
    return this.conn.hasCapacity();
  }
  deliver(msg: CoreMessage, delivery: Delivery): void {
    this.conn.deliver(this, msg, delivery, false);
  }
}

/** A QoS 1/2 message sent and not yet acknowledged. */
export interface Inflight {
  msg: CoreMessage;
  delivery: Delivery;
  qos: QoS;
  /** The message's row in a persistent session's queue (written before it was sent); deleted on the final ack. */
  row: Promise<string> | undefined;
  /** QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP. */
  released: boolean;
  /** What it counts against the connection's DeliveryBudget. */
  bytes: number;
}

/** A QoS 1/2 message waiting for the client's window (or the byte budget) to open. */
export interface Held {
  msg: CoreMessage;
  delivery: Delivery;
  qos: QoS;
  retain: boolean;
  subscriptionIds: SubscriptionIds;
  bytes: number;
}

/** A resumed session's stored queue, sent a page at a time as the window allows. */
export interface Replay {
  /** Rows read and not sent yet. */
  rows: MqttQueuedRecord[];
  /** Every row id read so far (never read twice), and how many of them are known deleted. */
  taken: Set<string>;
  deleted: number;
  loading: boolean;
  /** Cluster mode: more rows were stored meanwhile (a wake-up); read again before ending. */
  again: boolean;
}

export abstract class MqttClientState implements Session, MqttClient {
  readonly id = newSessionId('mqtt');
  readonly connectedAt: number;
  principal!: Principal;
  clientId = '';
  device = 'mqtt';
  closed = false;
  /** Why the session ended, once it has (for the session registry's observers). */
  endReason: string | undefined;
  /** CONNACK sent: the client is a session of this node. */
  connected = false;
  version: Version = 4;
  anonymous = false;
  /** tlsClientCertAsUser: the user its verified client certificate names, if any (set by the listener). */
  certificate: CertificateIdentity = NO_CERTIFICATE;
  /** How it reached us (for the connect hook; set by the listener). */
  origin: ConnectionOrigin = TCP_ORIGIN;
  /** The session outlives the connection (kept in the store). */
  sessionKept = false;

  // ---- limits the client announced in CONNECT ----
  clientReceiveMaximum = 65_535;
  clientMaxPacket = Infinity;
  /** v5 Request Problem Information: 0 means no reason strings outside CONNACK, PUBLISH and DISCONNECT [MQTT-3.1.2-29]. */
  problemInfo = true;
  /** v5 topic aliases towards the client: its maximum, and the aliases given so far. */
  clientAliasMax = 0;
  get aliasesOut(): Map<string, number> {
    return (this._aliasesOut ??= new Map());
  }

  // ---- subscriptions ----
  get subscriptions(): Map<string, MqttSubscription> {
    return (this._subscriptions ??= new Map());
  }
  /** Plain topic subscriptions (no mailbox, no share), and how many of them have wildcards: overlaps need both. */
  plainSubscriptions = 0;
  wildcardSubscriptions = 0;
  /** The plain topic subscriptions by filter, to find those a message matches without a scan of all of them. */
  get plainIndex(): TopicIndex<MqttSubscription> {
    return (this._plainIndex ??= new TopicIndex());
  }
  /** Messages already sent once to this connection for all its overlapping subscriptions, this tick. */
  get mergedNow(): Set<string> {
    return (this._mergedNow ??= new Set());
  }

  // ---- outbound: in flight, held, the stored queue ----
  get inflight(): Map<number, Inflight> {
    return (this._inflight ??= new Map());
  }
  /**
   * The delivery policy shared with the other protocols: bytes this connection pins, in flight and
   * held (maxHeldBytesPerConnection, `window.budget`), and the socket's backlog (slowConsumerBytes).
   */
  get window(): DeliveryWindow {
    return (this._window ??= new DeliveryWindow({
      maxHeldBytes: this.ctx.config.maxHeldBytesPerConnection,
      maxBufferedBytes: this.ctx.config.slowConsumerBytes,
      onCut: this.ctx.metrics.slowConsumerCounter(this.protocol),
    }));
  }
  /** QoS 1/2 messages waiting for the window to open, oldest first. */
  get held(): HeldQueue<Held> {
    return (this._held ??= this.window.queue<Held>(this.ctx.config.maxUnackedPerSubscription * 10));
  }
  /** Whether anything this connection sent or held may need settling at close (its delivery state was made). */
  get deliveryStateMade(): boolean {
    return this._inflight !== undefined || this._window !== undefined || this.waitingLive !== undefined;
  }
  /** Packet ids held by a resumed session's waiting messages while they are sent again. */
  get reserved(): Set<number> {
    return (this._reserved ??= new Set());
  }
  nextId = 1;
  replay: Replay | undefined;
  /** Cluster mode and a persistent session: QoS 1/2 topic messages come from the stored queue, not live (durable.ts). */
  get storeDelivers(): boolean {
    return this.sessionKept && this.ctx.cluster !== undefined;
  }
  /** Rows this connection is writing for messages it sends live (their ids join storeRows when written). */
  get keeping(): Set<Promise<string>> {
    return (this._keeping ??= new Set());
  }
  /** Rows of the stored queue this connection has sent and not seen deleted yet (never sent twice by it). */
  get storeRows(): Set<string> {
    return (this._storeRows ??= new Set());
  }
  /** While the stored queue is replayed on reconnect, live messages wait here (counted as held bytes). */
  waitingLive: [MqttSubscription, CoreMessage, Delivery, number][] | undefined;
  readonly delivered: { inc(): void };

  // ---- inbound ----
  /** QoS 2 packet ids received and not yet released (PUBREL). */
  get qos2In(): Set<number> {
    return (this._qos2In ??= new Set());
  }
  get aliasesIn(): Map<number, string> {
    return (this._aliasesIn ??= new Map());
  }
  /** publishRatePerSecond for this client's PUBLISH packets (a bucket starts full, so making it at the first PUBLISH changes nothing). */
  get bucket(): TokenBucket {
    return (this._bucket ??= new TokenBucket(this.ctx.config.publishRatePerSecond, systemClock));
  }
  /** Why reading from the client is paused now; it resumes when nothing is left. */
  get pausedFor(): Set<ReadPause> {
    return (this._pausedFor ??= new Set());
  }
  /** Parsed packets waiting to be handled, in bytes and in number. */
  inboundBytes = 0;
  inboundPackets = 0;
  lastRead = Date.now();
  /** Kept for the dispatcher, which clears it; keep-alive is checked by the shared sweep (connect.ts). */
  keepAliveTimer: NodeJS.Timeout | undefined;
  /** Silence after which the client is cut: 1.5 times the keep alive granted (0 until CONNACK). */
  keepAliveLimitMs = 0;
  get publishAcl(): PublishPermissions {
    return (this._publishAcl ??= new PublishPermissions(this.shared.acl, () => this.aclSubject()));
  }

  // ---- will ----
  will: IConnectPacket['will'] | undefined;
  /** Cluster mode: the will as the other nodes keep it (published by them if this node dies). */
  heldWill: object | undefined;

  // The maps, sets, window, bucket and ACL cache above are made on first use: most connections
  // (an idle device, a subscriber that never publishes) never need most of them, and empty Maps and
  // Sets are most of an idle connection's memory.
  private _aliasesOut: Map<string, number> | undefined;
  private _subscriptions: Map<string, MqttSubscription> | undefined;
  private _plainIndex: TopicIndex<MqttSubscription> | undefined;
  private _mergedNow: Set<string> | undefined;
  private _inflight: Map<number, Inflight> | undefined;
  private _window: DeliveryWindow | undefined;
  private _held: HeldQueue<Held> | undefined;
  private _reserved: Set<number> | undefined;
  private _keeping: Set<Promise<string>> | undefined;
  private _storeRows: Set<string> | undefined;
  private _qos2In: Set<number> | undefined;
  private _aliasesIn: Map<number, string> | undefined;
  private _bucket: TokenBucket | undefined;
  private _pausedFor: Set<ReadPause> | undefined;
  private _publishAcl: PublishPermissions | undefined;

  constructor(
    readonly ctx: HeraldContext,
    readonly shared: MqttShared,
    readonly transport: MqttTransport,
    readonly protocol: Protocol,
    readonly remoteAddress: string,
    /** Pre-authentication limits (time to CONNECT, bytes before it); told when CONNECT succeeds. */
    readonly admission: Admission,
  ) {
    this.connectedAt = ctx.clock.now();
    this.delivered = ctx.metrics.messagesOutOf[protocol];
  }

  /** Whether another message may be handed to this client now (its window, the byte budget, the socket). */
  abstract hasCapacity(): boolean;
  abstract deliver(sub: MqttSubscription, msg: CoreMessage, delivery: Delivery, retained: boolean, retainedQos?: number): void;
  /** The window opened while a resumed session's stored queue is sent: send more of it. */
  abstract continueReplay(): void;
  /** Cluster mode: rows were stored for this session (by whichever node took the publish): send them. */
  abstract pullStored(): void;
  /** The network connection is gone: clean up, and publish the will if the client did not say goodbye. */
  abstract onTransportClosed(): void;

  stats(): { subscriptions: number; unacked: number } {
    return { subscriptions: this._subscriptions?.size ?? 0, unacked: this._inflight?.size ?? 0 };
  }

  describe(): SessionDetail {
    const subscriptions = [...this.subscriptions.values()].map((s) => ({
      destination: s.key,
      kind: s.share !== undefined ? ('shared' as const) : s.mailbox !== undefined ? ('user' as const) : ('topic' as const),
      key: s.mailbox ?? s.filter,
      ...(s.share !== undefined ? { group: s.share } : {}),
      qos: s.qos,
    }));
    const budget = this.window.budget;
    return {
      subscriptions,
      inflight: { messages: this.inflight.size, bytes: budget.inflightBytes },
      held: { messages: this.held.length + (this.waitingLive?.length ?? 0), bytes: budget.heldBytes },
      wire: this.transport.wire(),
      credential: this.principal.credential.kind,
      version: this.version === 5 ? '5' : this.version === 4 ? '3.1.1' : '3.1',
      clientId: this.clientId,
    };
  }

  aclSubject(): AclSubject {
    return { principal: this.principal, clientId: this.clientId, anonymous: this.anonymous, protocol: this.protocol };
  }

  /** ACL decision for a publish topic, cached per connection (a Promise only while the ACL hook is asked). */
  mayPublish(topic: string): boolean | Promise<boolean> {
    return this.publishAcl.check(topic);
  }

  // ---- reading ----


  /** Whether reading from the client is paused now (without making the set of reasons). */
  get readingPaused(): boolean {
    return this._pausedFor !== undefined && this._pausedFor.size > 0;
  }

  pauseReading(why: ReadPause): void {
    if (this.closed || this.pausedFor.has(why)) return;
    if (this.pausedFor.size === 0) this.transport.pause();
    this.pausedFor.add(why);
  }

  resumeReading(why: ReadPause): void {
    if (!this._pausedFor?.delete(why)) return;
    if (this.pausedFor.size === 0 && !this.closed) this.transport.resume();
  }

  // ---- output and ending ----

  gen(p: Packet): Buffer {
    // v5 acknowledgements without a reason code go out in the 2-byte short form (success, no properties),
    // as the spec allows [MQTT-3.4.2.1]; mqtt-packet would otherwise add a 0x00 reason and an empty
    // property length, which some deployed clients (paho-mqtt 1.6 for Python on PUBREL) cannot read.
    if (this.version === 5 && ACK_COMMANDS.has(p.cmd) && (p as { reasonCode?: number }).reasonCode === undefined && !(p as { properties?: object }).properties) {
      return mqttPacket.generate({ ...p, reasonCode: 0 } as Packet, { protocolVersion: 5 });
    }
    return mqttPacket.generate(p, { protocolVersion: this.version });
  }

  write(data: Buffer): void {
    if (this.closed) return;
    this.transport.write(this.transport.prepare(data, false));
    // The window is only made once the backlog is over its bound (a CONNACK alone never makes it).
    const buffered = this.transport.buffered();
    if (buffered > this.ctx.config.slowConsumerBytes && this.window.backedUp(buffered)) {
      this.will = undefined;
      this.end();
    }
  }

  /** Ends with a v5 DISCONNECT carrying the reason (v3 has no server DISCONNECT: the connection just closes). */
  disconnect(reasonCode: ReasonCode, reason: string, wsCode = 1000): void {
    if (this.closed) return;
    this.endReason ??= reason;
    if (this.connected && this.version === 5) {
      const withReason = this.gen({ cmd: 'disconnect', reasonCode, properties: { reasonString: reason.slice(0, 300) } });
      // [MQTT-3.14.2-3]: the reason string is left out rather than exceed the client's maximum packet size.
      this.write(withReason.length <= this.clientMaxPacket ? withReason : this.gen({ cmd: 'disconnect', reasonCode }));
    }
    this.end(wsCode);
  }

  /**
   * A WebSocket message over the route's limit, which the transport refuses
   * with 1009 before any of it is read: a v5 client is told why first
   * (DISCONNECT 0x95), as it is over TCP.
   */
  tooLarge(bytes: number, limit: number): void {
    if (this.closed) return;
    this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'too_large' });
    const max = this.ctx.config.mqttMaxPacketBytes;
    this.disconnect(RC.packetTooLarge, `packet larger than ${max} bytes (a WebSocket message of ${bytes} bytes is over the ${limit}-byte limit)`, 1009);
  }

  /**
   * Ends before CONNACK with a refusing one (a return code in 3.1.1, a reason code and string in 5.0);
   * counted in herald_protocol_errors_total under `metric`, when given.
   */
  refuse(code: Refusal, reason: string, metric?: string): void {
    if (metric) this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: metric });
    this.write(
      this.version === 5
        ? this.gen({ cmd: 'connack', reasonCode: code.v5, sessionPresent: false, properties: { reasonString: reason } })
        : this.gen({ cmd: 'connack', returnCode: code.v3, sessionPresent: false }),
    );
    this.end();
  }

  /** Another connection with this client id took over (here or on another node). */
  takenOver(): void {
    this.disconnect(RC.sessionTakenOver, 'session taken over by another connection with the same client id');
  }

  close(reason: CloseReason): void {
    const code = reason.code === 'shutdown' ? RC.serverShuttingDown : reason.code === 'kicked' ? RC.administrativeAction : RC.notAuthorized;
    // 3.1.1 has no DISCONNECT from the server: the connection just closes (over WebSocket, 1001 for a shutdown).
    this.disconnect(code, reason.message, reason.code === 'shutdown' ? 1001 : 1000);
  }

  /** Closes the connection (`wsCode`: the WebSocket close code; TCP just closes). */
  end(wsCode = 1000): void {
    if (this.closed) return;
    // Read again (and discard) so that the client's close is seen and the socket is released.
    if (this.readingPaused) this.transport.resume();
    this.transport.close(wsCode, '');
    this.onTransportClosed();
  }
}
