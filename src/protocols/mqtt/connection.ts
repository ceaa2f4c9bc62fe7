/**
 * One MQTT connection (3.1, 3.1.1 or 5.0, over TCP or WebSocket) on the
 * broker core. The framer cuts the stream into whole packets and
 * mqtt-packet decodes them; this file does the protocol:
 * CONNECT and its credentials (Herald users and tokens, hosted apps' user
 * tokens), keep-alive, QoS 0/1/2 both ways with an in-flight window,
 * retained messages, wills, and the mapping of MQTT topics onto Herald's
 * topics (`a/b` is STOMP `/topic/a.b`) and mailboxes (`$user/x`).
 */
import { randomBytes } from 'node:crypto';
import mqttPacket, { type IConnectPacket, type IPublishPacket, type ISubscribePacket, type IUnsubscribePacket, type Packet } from 'mqtt-packet';
import { AppTokenRefusal } from '../../apps/mqtt-apps.js';
import { systemClock } from '../../clock.js';
import type { HeraldContext } from '../../context.js';
import { AuthError, type Principal } from '../../core/auth.js';
import type { Consumer, Delivery } from '../../core/broker.js';
import { PublishPermissions, type AclSubject } from '../../core/acl.js';
import { DeliveryBudget, pinnedSize } from '../../core/delivery-budget.js';
import { filterProblem, topicMatches } from '../../core/destination.js';
import { createMessage, inAudience, type CoreMessage } from '../../core/message.js';
import { TokenBucket } from '../../core/rate-limit.js';
import type { CloseReason, Protocol, Session } from '../../core/session.js';
import { MqttFrameError, MqttFramer } from './framer.js';
import type { MqttShared } from './shared.js';
import { mqttHeaders, mqttTopicOf, payloadFormatOf, publishProperties, type PersistedProperties, type SubscriptionIds } from './properties.js';
import { storeUnavailable, type MqttQueuedRecord, type MqttSubscriptionRecord } from '../../store/store.js';
import type { Admission } from '../../transports/admission.js';

type Version = 3 | 4 | 5;
type QoS = 0 | 1 | 2;

export interface MqttTransport {
  write(data: Buffer): void;
  buffered(): number;
  close(): void;
  /** Stops reading from the client (publish rate, inbound backlog) until `resume`. */
  pause(): void;
  resume(): void;
}

/** Return codes of MQTT 3.1.1 CONNACK and the matching 5.0 reason codes. */
const REFUSE = {
  version: { v4: 1, v5: 0x84 },
  clientId: { v4: 2, v5: 0x85 },
  badCredentials: { v4: 4, v5: 0x86 },
  notAuthorized: { v4: 5, v5: 0x87 },
  quota: { v4: 3, v5: 0x97 },
  unavailable: { v4: 3, v5: 0x88 },
} as const;

let counter = 0;
const ACK_COMMANDS: ReadonlySet<string> = new Set(['puback', 'pubrec', 'pubrel', 'pubcomp']);

const NO_DELIVERY: Delivery = { redelivered: false, settle: undefined };
/** Topic aliases a v5 client may use towards Herald. */
const INBOUND_ALIASES = 64;
/**
 * Packets parsed but not yet handled (behind a slow store write, or a
 * publisher over its rate): past either high mark the socket is not read
 * until the backlog is under both low marks.
 */
const INBOUND_HIGH_BYTES = 1024 * 1024;
const INBOUND_LOW_BYTES = 256 * 1024;
const INBOUND_HIGH_PACKETS = 1000;
const INBOUND_LOW_PACKETS = 100;
/** Rows of a resumed session's stored queue read at a time (more as the client acknowledges). */
const REPLAY_PAGE = 32;

class MqttSubscription implements Consumer {
  constructor(
    readonly conn: MqttConnection,
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

interface Inflight {
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
interface Held {
  msg: CoreMessage;
  delivery: Delivery;
  qos: QoS;
  retain: boolean;
  subscriptionIds: SubscriptionIds;
  bytes: number;
}

/** A resumed session's stored queue, sent a page at a time as the window allows. */
interface Replay {
  /** Rows read and not sent yet. */
  rows: MqttQueuedRecord[];
  /** Every row id read so far (never read twice), and how many of them are known deleted. */
  taken: Set<string>;
  deleted: number;
  loading: boolean;
}

export class MqttConnection implements Session {
  readonly id = `mqtt-${process.pid.toString(36)}-${(++counter).toString(36)}`;
  readonly connectedAt: number;
  principal!: Principal;
  clientId = '';
  device = 'mqtt';
  closed = false;

  private version: Version = 4;
  private connected = false;
  private readonly parser = mqttPacket.parser();
  /** Cuts the byte stream into whole packets (linear however it is split) before mqtt-packet sees them. */
  private readonly framer: MqttFramer;
  private readonly subscriptions = new Map<string, MqttSubscription>();
  /** Plain topic subscriptions (no mailbox, no share), and how many of them have wildcards: overlaps need both. */
  private plainSubscriptions = 0;
  private wildcardSubscriptions = 0;
  /** Messages already sent once to this connection for all its overlapping subscriptions, this tick. */
  private readonly mergedNow = new Set<string>();
  private readonly inflight = new Map<number, Inflight>();
  /** Bytes this connection pins: in flight and held (maxHeldBytesPerConnection). */
  private readonly budget: DeliveryBudget;
  /** publishRatePerSecond for this client's PUBLISH packets. */
  private readonly bucket: TokenBucket;
  /** Why reading from the client is paused now; it resumes when nothing is left. */
  private readonly pausedFor = new Set<'inbound' | 'rate'>();
  /** Parsed packets waiting to be handled, in bytes and in number. */
  private inboundBytes = 0;
  private inboundPackets = 0;
  /** The stream broke (malformed or oversized packet): nothing more is read. */
  private faulted = false;
  private replay: Replay | undefined;

  stats(): { subscriptions: number; unacked: number } {
    return { subscriptions: this.subscriptions.size, unacked: this.inflight.size };
  }
  private readonly held: Held[] = [];
  private readonly qos2In = new Set<number>();
  /** Packet ids held by a resumed session's waiting messages while they are sent again. */
  private readonly reserved = new Set<number>();
  private readonly aliasesIn = new Map<number, string>();
  private nextId = 1;
  private will: IConnectPacket['will'] | undefined;
  /** Cluster mode: the will as the other nodes keep it (published by them if this node dies). */
  private heldWill: object | undefined;
  private lastRead = Date.now();
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private clientReceiveMaximum = 65_535;
  private clientMaxPacket = Infinity;
  /** v5 Request Problem Information: 0 means no reason strings outside CONNACK, PUBLISH and DISCONNECT [MQTT-3.1.2-29]. */
  private problemInfo = true;
  /** v5 topic aliases towards the client: its maximum, and the aliases given so far. */
  private clientAliasMax = 0;
  private readonly aliasesOut = new Map<string, number>();
  private chain: Promise<void> = Promise.resolve();
  private readonly delivered: { inc(): void };
  /** The session outlives the connection (kept in the store). */
  private sessionKept = false;
  private anonymous = false;
  private readonly publishAcl: PublishPermissions;
  /** While the stored queue is replayed on reconnect, live messages wait here (counted as held bytes). */
  private waitingLive: [MqttSubscription, CoreMessage, Delivery, number][] | undefined;

  constructor(
    private readonly ctx: HeraldContext,
    private readonly shared: MqttShared,
    private readonly transport: MqttTransport,
    readonly protocol: Protocol,
    readonly remoteAddress: string,
    /** Pre-authentication limits (time to CONNECT, bytes before it); told when CONNECT succeeds. */
    private readonly admission: Admission,
  ) {
    this.connectedAt = ctx.clock.now();
    this.delivered = ctx.metrics.messagesOut.labels(protocol);
    this.publishAcl = new PublishPermissions(shared.acl, () => this.aclSubject());
    this.framer = new MqttFramer(ctx.config.mqttMaxPacketBytes);
    this.budget = new DeliveryBudget(ctx.config.maxHeldBytesPerConnection);
    this.bucket = new TokenBucket(ctx.config.publishRatePerSecond, systemClock);
    this.parser.on('packet', (p: Packet) => this.enqueue(p));
    this.parser.on('error', (err: Error) => this.protocolError(err.message));
    // A client that never completes CONNECT in time, or sends too much before it, is dropped
    // (MQTT has no way to tell a client that has not been sent a CONNACK why, short of one).
    admission.onLimit = (reason) => {
      this.ctx.log.debug({ session: this.id, reason }, 'MQTT connection cut before CONNECT');
      this.end();
    };
  }

  // ---- input -----------------------------------------------------------------------

  receive(data: Buffer): void {
    if (this.closed || this.faulted) return;
    this.lastRead = Date.now();
    try {
      this.framer.feed(data, this.parseWhole);
    } catch (err) {
      if (!(err instanceof MqttFrameError)) throw err;
      // Nothing more is read; the packets before the fault are handled first, so a client learns
      // of its CONNACK (and of what it published) before the DISCONNECT.
      this.faulted = true;
      this.chain = this.chain.then(() => {
        if (err.kind === 'malformed') return this.protocolError(err.message);
        this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'too_large' });
        this.disconnect(0x95, `packet larger than ${this.ctx.config.mqttMaxPacketBytes} bytes (${err.message})`);
      });
    }
  }

  /** mqtt-packet gets whole packets only, so it never rescans a partial one. */
  private readonly parseWhole = (packets: Buffer): void => {
    if (!this.closed) this.parser.parse(packets);
  };

  /** Packets are handled one at a time, in order; reading stops while too many wait. */
  private enqueue(p: Packet): void {
    const bytes = (p.length ?? 0) + 2;
    this.inboundBytes += bytes;
    this.inboundPackets++;
    if (this.inboundBytes > INBOUND_HIGH_BYTES || this.inboundPackets > INBOUND_HIGH_PACKETS) this.pauseReading('inbound');
    this.chain = this.chain
      .then(() => this.handle(p))
      .catch((err: unknown) => this.failed(err, p.cmd))
      .then(() => {
        this.inboundBytes -= bytes;
        this.inboundPackets--;
        if (this.inboundBytes <= INBOUND_LOW_BYTES && this.inboundPackets <= INBOUND_LOW_PACKETS) this.resumeReading('inbound');
      });
  }

  private failed(err: unknown, what: string): void {
    const down = storeUnavailable(err);
    if (down) {
      // No PUBACK/SUBACK for what was not stored: the client repeats it after reconnecting.
      this.ctx.log.warn({ err: down.message, packet: what, session: this.id }, 'store unavailable; connection ended');
      if (this.connected) this.disconnect(0x89, 'server busy: the message store is unavailable; reconnect and repeat later');
      else this.refuse(REFUSE.unavailable, 'server unavailable: the message store is unavailable; try again later');
      return;
    }
    this.ctx.log.error({ err, session: this.id }, 'MQTT packet handling failed');
    this.disconnect(0x80, 'internal error');
  }

  private pauseReading(why: 'inbound' | 'rate'): void {
    if (this.closed || this.pausedFor.has(why)) return;
    if (this.pausedFor.size === 0) this.transport.pause();
    this.pausedFor.add(why);
  }

  private resumeReading(why: 'inbound' | 'rate'): void {
    if (!this.pausedFor.delete(why)) return;
    if (this.pausedFor.size === 0 && !this.closed) this.transport.resume();
  }

  /** A publisher over publishRatePerSecond waits (not read meanwhile) until it may publish again; nothing it sent is dropped. */
  private async throttle(wait: number): Promise<void> {
    this.pauseReading('rate');
    do await new Promise((r) => setTimeout(r, wait));
    while (!this.closed && (wait = this.bucket.take()) > 0);
    this.resumeReading('rate');
  }

  private protocolError(message: string): void {
    if (this.closed) return;
    this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'malformed' });
    this.ctx.log.debug({ session: this.id, message }, 'MQTT protocol error');
    if (!this.connected && message === 'Invalid protocol version') {
      // [MQTT-3.1.2-2]: CONNACK 0x01 (unacceptable protocol level), then close.
      this.write(mqttPacket.generate({ cmd: 'connack', returnCode: 1, sessionPresent: false }, { protocolVersion: 4 }));
      return this.end();
    }
    this.disconnect(0x81, message);
  }

  private async handle(p: Packet): Promise<void> {
    if (this.closed) return;
    if ((p.length ?? 0) > this.ctx.config.mqttMaxPacketBytes) {
      this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'too_large' });
      return this.disconnect(0x95, `packet larger than ${this.ctx.config.mqttMaxPacketBytes} bytes`);
    }
    if (!this.connected) {
      if (p.cmd !== 'connect') return this.protocolError(`first packet must be CONNECT, not ${p.cmd.toUpperCase()}`);
      return this.onConnect(p);
    }
    switch (p.cmd) {
      case 'connect':
        return this.disconnect(0x82, 'a second CONNECT is a protocol error');
      case 'publish': {
        const wait = this.bucket.take();
        if (wait > 0) {
          await this.throttle(wait);
          if (this.closed) return;
        }
        return this.onPublish(p);
      }
      case 'puback':
        return this.settleOut(p.messageId, 'ack');
      case 'pubrec': {
        const f = p.messageId !== undefined ? this.inflight.get(p.messageId) : undefined;
        if (f) {
          f.released = true;
          if (f.row) {
            const id = p.messageId!;
            void f.row.then((rowId) => this.ctx.store.setMqttQueuedState(rowId, id, true)).catch(() => undefined);
          }
        }
        return this.write(this.gen({ cmd: 'pubrel', messageId: p.messageId!, ...(f ? {} : { reasonCode: 0x92 }) }));
      }
      case 'pubcomp':
        return this.settleOut(p.messageId, 'ack');
      case 'pubrel': {
        const known = this.qos2In.delete(p.messageId!);
        if (known && this.sessionKept) await this.shared.sessions.saveQos2In(this.clientId, [...this.qos2In]);
        // v5: an unknown packet id is answered with 0x92 (Packet Identifier not found).
        return this.write(this.gen({ cmd: 'pubcomp', messageId: p.messageId!, ...(known || this.version !== 5 ? {} : { reasonCode: 0x92 }) }));
      }
      case 'subscribe':
        return this.onSubscribe(p);
      case 'unsubscribe':
        return this.onUnsubscribe(p);
      case 'pingreq':
        return this.write(this.gen({ cmd: 'pingresp' }));
      case 'disconnect':
        // A normal DISCONNECT discards the will (v5 reason 0x04 asks to send it).
        if (!(this.version === 5 && p.reasonCode === 0x04)) this.will = undefined;
        if (p.properties?.sessionExpiryInterval !== undefined) {
          this.shared.sessions.setExpiry(this.clientId, Math.min(p.properties.sessionExpiryInterval, this.ctx.config.mqttSessionExpirySeconds));
        }
        return this.end();
      default:
        return this.disconnect(0x82, `unexpected ${p.cmd.toUpperCase()} packet from a client`);
    }
  }

  // ---- CONNECT ---------------------------------------------------------------------

  private refuse(code: { v4: number; v5: number }, reason: string): void {
    this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'connect_refused' });
    this.write(
      this.version === 5
        ? this.gen({ cmd: 'connack', reasonCode: code.v5, sessionPresent: false, properties: { reasonString: reason } })
        : this.gen({ cmd: 'connack', returnCode: code.v4, sessionPresent: false }),
    );
    this.end();
  }

  private async authenticate(p: IConnectPacket): Promise<Principal | { code: { v4: number; v5: number }; reason: string }> {
    const password = p.password?.toString('utf8');
    if (password) {
      try {
        const appUser = await this.shared.apps.checkUserToken(password, p.username, p.clientId);
        if (appUser) return appUser;
      } catch (err) {
        if (err instanceof AppTokenRefusal) return { code: err.kind === 'bad' ? REFUSE.badCredentials : REFUSE.notAuthorized, reason: err.message };
        throw err;
      }
      // A Herald token (or JWT) as password, with any user name: checked first because it is cheap,
      // and so that a token never counts as a failed password login. Without a user name the password
      // can only be a token: a refused one counts against the address (tokenFailuresPerAddress).
      let tokenRefusal: AuthError;
      try {
        return await this.ctx.auth.authenticate(password, p.username ? { renew: true } : { renew: true, address: this.remoteAddress });
      } catch (err) {
        if (!(err instanceof AuthError)) throw err;
        tokenRefusal = err;
      }
      if (p.username && tokenRefusal.code === 'invalid_token') {
        try {
          const user = await this.ctx.auth.checkPassword(p.username, password, this.remoteAddress);
          return { userId: user.id, name: user.name, role: user.role, credential: { kind: 'password' } };
        } catch (err) {
          if (!(err instanceof AuthError)) throw err;
          if (err.code !== 'bad_credentials') return { code: REFUSE.notAuthorized, reason: err.message };
        }
      }
      return {
        code: tokenRefusal.code === 'user_disabled' || tokenRefusal.code === 'rate_limited' ? REFUSE.notAuthorized : REFUSE.badCredentials,
        reason: tokenRefusal.code === 'invalid_token' ? 'wrong user name, password or token' : tokenRefusal.message,
      };
    }
    if (this.ctx.config.allowAnonymous) {
      this.anonymous = true;
      return { userId: 'anonymous:' + p.clientId, name: 'anonymous', role: 'user', credential: { kind: 'anonymous' } };
    }
    return { code: REFUSE.notAuthorized, reason: 'credentials are required: user name and password, or a token as password' };
  }

  /**
   * Why `userId` may not use `clientId`: another user has a connection with
   * it here, or a persistent session (here, or in a cluster as the store says).
   */
  private async claimedByOther(clientId: string, userId: string): Promise<string | undefined> {
    const holder = this.shared.clients.get(clientId);
    const stored = this.shared.sessions.get(clientId) ?? (this.shared.cluster ? await this.shared.sessions.fetch(clientId) : undefined);
    const owners = [holder && holder !== this ? holder.principal.userId : undefined, stored?.principal.userId];
    if (owners.some((o) => o !== undefined && o !== userId)) {
      this.ctx.log.debug({ session: this.id, clientId, userId }, 'MQTT client id of another user refused');
      return `client id ${clientId} is in use by another user`;
    }
    return undefined;
  }

  private async onConnect(p: IConnectPacket): Promise<void> {
    this.version = (p.protocolVersion ?? 4) as Version;
    clearTimeout(this.keepAliveTimer);
    let clientId = p.clientId;
    let assigned = false;
    if (clientId === '') {
      if (!p.clean && this.version !== 5) return this.refuse(REFUSE.clientId, 'an empty client id needs clean session');
      clientId = 'herald-' + randomBytes(8).toString('hex');
      assigned = true;
    }
    const method = p.properties?.authenticationMethod;
    if (this.version === 5 && method !== undefined) {
      // [MQTT-4.12.0-1]: an authentication method the server does not support is refused.
      return this.refuse({ v4: 4, v5: 0x8c }, `authentication method "${method.slice(0, 50)}" is not supported: send a user name and password, or a token as password`);
    }
    const who = await this.authenticate(p);
    if (this.closed) return;
    if (!('userId' in who)) return this.refuse(who.code, who.reason);
    if (this.ctx.sessions.ofUser(who.userId).size >= this.ctx.config.maxConnectionsPerUser) {
      return this.refuse(REFUSE.quota, `user "${who.name}" already has ${this.ctx.config.maxConnectionsPerUser} connections open`);
    }
    this.principal = who;
    this.clientId = clientId;
    this.device = clientId;
    this.will = p.will;
    if (this.will) {
      // The will is published later as this client: the same rules as its PUBLISH apply now.
      const topic = this.will.topic;
      if (!topic || /[+#\u0000\uFFFD]/.test(topic)) return this.refuse({ v4: 2, v5: 0x90 }, `the will topic "${topic.slice(0, 100)}" is not a valid topic name`);
      const refusal = await this.ctx.broker.publishRefusal(topic);
      if (this.closed) return;
      if (refusal !== undefined) {
        // $ topics as before (0x90); topics the server writes itself, such as chat threads: not authorized.
        if (topic.startsWith('$')) return this.refuse({ v4: 5, v5: 0x90 }, `the will topic ${topic.slice(0, 100)} is reserved for the server`);
        return this.refuse(REFUSE.notAuthorized, `not allowed to publish the will to ${topic.slice(0, 100)}: ${refusal}`);
      }
      if (!this.mayPublish(topic)) {
        this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'acl_denied' });
        return this.refuse(REFUSE.notAuthorized, `not allowed to publish the will to ${topic.slice(0, 100)}`);
      }
    }
    // A client id belongs to the user whose connection or stored session has it: nobody else may take it over.
    const claimed = await this.claimedByOther(clientId, who.userId);
    if (this.closed) return;
    if (claimed) return this.refuse(REFUSE.clientId, claimed);
    // Session takeover: the same client id on another node (cluster), then on this one, is ended.
    if (this.shared.cluster) {
      await this.shared.cluster.takeover(clientId, who.userId);
      if (this.closed) return;
    }
    const previous = this.shared.clients.get(clientId);
    if (previous && previous !== this && previous.principal.userId !== who.userId) {
      // Another user's CONNECT with this id got here first (while this one was being checked).
      return this.refuse(REFUSE.clientId, `client id ${clientId} is in use by another user`);
    }
    if (previous && previous !== this) previous.takenOver();
    this.shared.clients.set(clientId, this);

    const props = p.properties ?? {};
    if (props.receiveMaximum) this.clientReceiveMaximum = props.receiveMaximum;
    if (props.maximumPacketSize) this.clientMaxPacket = props.maximumPacketSize;
    if (this.version === 5 && props.requestProblemInformation === false) this.problemInfo = false;
    if (this.version === 5 && props.topicAliasMaximum) this.clientAliasMax = props.topicAliasMaximum;
    const max = this.ctx.config.mqttMaxKeepAliveSeconds;
    const asked = p.keepalive ?? 0;
    const keepAlive = asked === 0 || asked > max ? max : asked;
    // Sessions: clean start discards a stored one; otherwise the same user resumes it.
    const maxExpiry = this.ctx.config.mqttSessionExpirySeconds;
    const expiry = this.version === 5 ? Math.min(props.sessionExpiryInterval ?? 0, maxExpiry) : p.clean ? 0 : maxExpiry;
    let existing = this.shared.sessions.get(clientId) ?? (this.shared.cluster ? await this.shared.sessions.fetch(clientId) : undefined);
    if (existing && existing.principal.userId !== who.userId) {
      // Stored by another user's CONNECT while this one was being checked: that session stays theirs.
      if (this.shared.clients.get(clientId) === this) this.shared.clients.delete(clientId);
      return this.refuse(REFUSE.clientId, `client id ${clientId} is in use by another user`);
    }
    if (existing && p.clean) {
      await this.shared.sessions.discard(clientId);
      existing = undefined;
    }
    const sessionPresent = existing !== undefined;
    if (expiry > 0 || existing) {
      this.sessionKept = true;
      this.waitingLive = [];
      const qos2In = existing?.record.qos2In ?? [];
      for (const id of qos2In) this.qos2In.add(id);
      await this.shared.sessions.attach(clientId, who, expiry, existing?.record.subscriptions ?? [], qos2In);
    }
    if (this.closed) return;
    this.connected = true;
    this.ctx.sessions.add(this);
    this.admission.authenticated();
    const connack: Packet =
      this.version === 5
        ? {
            cmd: 'connack',
            reasonCode: 0,
            sessionPresent,
            properties: {
              ...(expiry !== (props.sessionExpiryInterval ?? 0) ? { sessionExpiryInterval: expiry } : {}),
              ...(keepAlive !== asked ? { serverKeepAlive: keepAlive } : {}),
              ...(assigned ? { assignedClientIdentifier: clientId } : {}),
              receiveMaximum: this.ctx.config.mqttMaxInflight,
              maximumPacketSize: this.ctx.config.mqttMaxPacketBytes,
              topicAliasMaximum: INBOUND_ALIASES,
              sharedSubscriptionAvailable: true,
              wildcardSubscriptionAvailable: true,
              subscriptionIdentifiersAvailable: true,
              retainAvailable: true,
            },
          }
        : { cmd: 'connack', returnCode: 0, sessionPresent };
    this.write(this.gen(connack));
    if (this.will && this.shared.cluster) {
      // Published by another node if this one dies: after the will delay or when the session ends, whichever is first.
      const delay = Math.min(this.will.properties?.willDelayInterval ?? 0, expiry);
      this.heldWill = this.shared.cluster.holdWill(clientId, MqttConnection.willMessage(this.will), delay);
    }
    if (this.sessionKept) await this.resume(existing?.record.subscriptions ?? []);
    this.keepAliveTimer = setInterval(() => {
      // Not silent while Herald itself is not reading (publish rate, inbound backlog): its packets wait here.
      if (this.pausedFor.size > 0 || this.inboundPackets > 0) this.lastRead = Date.now();
      const silent = Date.now() - this.lastRead;
      if (silent > keepAlive * 1500) {
        this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'keepalive' });
        this.disconnect(0x8d, `keep alive timeout: nothing received for ${silent} ms`);
      }
    }, Math.max(1000, (keepAlive * 1500) / 3));
    this.keepAliveTimer.unref();
  }

  /**
   * Restores a resumed session's subscriptions, then sends its stored queue
   * before live traffic: a page of rows at a time, as the client's window and
   * the byte budget allow (live messages wait meanwhile).
   */
  private async resume(subs: MqttSubscriptionRecord[]): Promise<void> {
    for (const r of subs) {
      const parsed = MqttConnection.parseFilter(r.filter);
      if (typeof parsed === 'string') continue;
      this.attach(new MqttSubscription(this, parsed.filter, r.qos as QoS, r.noLocal, r.retainAsPublished, parsed.mailbox, r.subscriptionId ?? undefined, parsed.share));
    }
    this.replay = { rows: [], taken: new Set(), deleted: 0, loading: false };
    await this.pumpReplay();
  }

  /** Sends stored rows while the window has room, reading the next page when one is used up; ends the replay when none are left. */
  private async pumpReplay(): Promise<void> {
    const r = this.replay;
    while (r && this.replay === r && !this.closed) {
      while (r.rows.length > 0 && this.hasCapacity()) this.sendStored(r.rows.shift()!);
      if (r.rows.length > 0 || r.loading) return; // the window is full: an acknowledgement calls again
      r.loading = true;
      let page: MqttQueuedRecord[];
      try {
        // Rows read before and not yet deleted come first again: skip them. The first page holds at
        // least a whole window, so that it has every row sent before the drop (their packet ids stay theirs).
        const first = r.taken.size === 0 ? this.ctx.config.mqttMaxInflight : 0;
        page = await this.ctx.store.loadMqttQueue(this.clientId, r.taken.size - r.deleted + first + REPLAY_PAGE);
      } finally {
        r.loading = false;
      }
      if (this.replay !== r || this.closed) return;
      r.rows = page.filter((q) => !r.taken.has(q.id));
      for (const q of r.rows) {
        r.taken.add(q.id);
        // Packet ids already used by waiting messages stay theirs.
        if (q.packetId !== null && !this.inflight.has(q.packetId)) this.reserved.add(q.packetId);
      }
      if (r.rows.length === 0) return this.endReplay();
    }
  }

  /** Deletes a row of the session's queue, counting it for the replay's paging. */
  private deleteRow(id: string): void {
    const r = this.replay;
    void this.ctx.store
      .deleteMqttQueued(id)
      .then(() => {
        if (r && r.taken.has(id)) r.deleted++;
      })
      .catch(() => undefined);
  }

  private sendStored(q: MqttQueuedRecord): void {
    const props = JSON.parse(q.properties) as PersistedProperties;
    if (props.expiresAt !== undefined && props.expiresAt <= this.ctx.clock.now() && q.packetId === null) {
      this.deleteRow(q.id);
      return;
    }
    const row = Promise.resolve(q.id);
    // A packet id still reserved is this row's; one taken meanwhile by another message gets the row a new id.
    const ownId = q.packetId !== null && this.reserved.delete(q.packetId) ? q.packetId : undefined;
    if (q.released && ownId !== undefined) {
      // QoS 2 whose PUBREC came back before the drop: only PUBREL remains [MQTT-4.4.0-1].
      const msg = createMessage({ target: { kind: 'topic', topic: q.topic }, body: q.body });
      const bytes = pinnedSize(msg);
      this.budget.fly(bytes);
      this.inflight.set(ownId, { msg, delivery: NO_DELIVERY, qos: 2, row, released: true, bytes });
      this.write(this.gen({ cmd: 'pubrel', messageId: ownId }));
      return;
    }
    const msg = createMessage({
      ...payloadFormatOf(props),
      expiresAt: props.expiresAt,
      replyTo: props.responseTopic,
      correlation: props.correlationData !== undefined ? Buffer.from(props.correlationData, 'base64') : undefined,
      target: q.topic.startsWith('$user/') ? { kind: 'user', userId: this.principal.userId, name: q.topic.slice(6) } : { kind: 'topic', topic: q.topic },
      body: q.body,
      qos: q.qos as QoS,
      contentType: props.contentType,
      headers: mqttHeaders({ ...(props.userProperties ? { userProperties: props.userProperties } : {}) }),
    });
    // Sent before with this packet id: again with DUP set [MQTT-4.4.0-1]; never sent: a new id.
    const packetId = this.send(msg, q.qos as QoS, false, props.subscriptionIdentifier, NO_DELIVERY, row, ownId);
    if (packetId !== undefined && packetId !== ownId) void this.ctx.store.setMqttQueuedState(q.id, packetId, false);
  }

  /** The stored queue is sent: live messages that waited go out now, in order. */
  private endReplay(): void {
    this.replay = undefined;
    this.reserved.clear();
    const live = this.waitingLive ?? [];
    this.waitingLive = undefined;
    for (const [sub, msg, d, bytes] of live) {
      this.budget.unhold(bytes);
      this.deliver(sub, msg, d, false);
    }
  }

  private subscriptionRecords(): MqttSubscriptionRecord[] {
    return [...this.subscriptions.values()].map((s) => ({
      filter: s.key,
      qos: s.qos,
      noLocal: s.noLocal,
      retainAsPublished: s.retainAsPublished,
      retainHandling: 0,
      subscriptionId: s.subscriptionId ?? null,
    }));
  }

  // ---- PUBLISH from the client -------------------------------------------------------

  private async onPublish(p: IPublishPacket): Promise<void> {
    let topic = p.topic;
    const alias = p.properties?.topicAlias;
    if (alias !== undefined && (alias < 1 || alias > INBOUND_ALIASES)) {
      return this.disconnect(0x94, `topic alias ${alias} is outside 1..${INBOUND_ALIASES}`);
    }
    if (alias !== undefined) {
      if (topic) this.aliasesIn.set(alias, topic);
      else topic = this.aliasesIn.get(alias) ?? '';
      if (!topic) return this.disconnect(0x82, `topic alias ${alias} is not set`);
    }
    // mqtt-packet decodes invalid UTF-8 to U+FFFD; such a topic is malformed [MQTT-1.5.3-1].
    if (!topic || /[+#\u0000\uFFFD]/.test(topic)) {
      return this.disconnect(0x90, `topic name "${topic.slice(0, 100)}" is not valid for PUBLISH`);
    }
    if (p.qos === 2 && this.qos2In.has(p.messageId!)) {
      // A repeated QoS 2 PUBLISH before PUBREL: acknowledged again, delivered once.
      return this.write(this.gen({ cmd: 'pubrec', messageId: p.messageId! }));
    }
    if (p.qos === 2 && this.version === 5 && this.qos2In.size >= this.ctx.config.mqttMaxInflight) {
      // [MQTT-3.3.4-9]: more unreleased QoS 2 messages than the Receive Maximum we announced.
      return this.disconnect(0x93, `receive maximum exceeded: ${this.qos2In.size} QoS 2 messages await PUBREL (the limit is ${this.ctx.config.mqttMaxInflight})`);
    }
    const ack = (reasonCode?: number, reasonString?: string): void => {
      if (p.qos === 0) return;
      const cmd = p.qos === 1 ? 'puback' : 'pubrec';
      if (p.qos === 2 && (reasonCode === undefined || reasonCode < 0x80)) {
        this.qos2In.add(p.messageId!);
        if (this.sessionKept) void this.shared.sessions.saveQos2In(this.clientId, [...this.qos2In]);
      }
      this.write(
        this.gen(
          this.version === 5 && reasonCode !== undefined
            ? { cmd, messageId: p.messageId!, reasonCode, ...(reasonString && this.problemInfo ? { properties: { reasonString } } : {}) }
            : { cmd, messageId: p.messageId! },
        ),
      );
    };
    const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
    const expiry = p.properties?.messageExpiryInterval;
    const base = {
      body: payload,
      qos: p.qos,
      retain: p.retain,
      ...(expiry !== undefined ? { expiresAt: this.ctx.clock.now() + expiry * 1000 } : {}),
      ...(p.properties?.responseTopic !== undefined ? { replyTo: p.properties.responseTopic } : {}),
      ...(p.properties?.correlationData !== undefined ? { correlation: p.properties.correlationData } : {}),
      contentType: p.properties?.contentType,
      ...payloadFormatOf(p.properties),
      headers: mqttHeaders(p.properties),
      publisherSession: this.id,
    };
    this.ctx.metrics.messagesIn.inc({ protocol: this.protocol });
    if (topic.startsWith('$user/') && topic.length > 6) {
      const name = topic.slice(6);
      this.ctx.broker.publishUser(createMessage({ ...base, target: { kind: 'user', userId: this.principal.userId, name } }));
      return ack(0);
    }
    // Topics no client may write: $ topics [MQTT-4.7.2-1] and chat threads (the server writes them for their members).
    // A v3 client is not told (the message is simply not delivered, nor retained); a v5 client gets 0x87.
    const asked = this.ctx.broker.publishRefusal(topic);
    const refusal = asked === undefined || typeof asked === 'string' ? asked : await asked;
    if (refusal !== undefined) {
      if (this.closed) return;
      return ack(0x87, topic.startsWith('$') ? `${topic.slice(0, 100)} is reserved for the server` : refusal);
    }
    if (this.closed) return;
    if (!this.mayPublish(topic)) {
      this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'acl_denied' });
      return ack(0x87, `not allowed to publish to ${topic}`);
    }
    const msg = createMessage({ ...base, target: { kind: 'topic', topic } });
    if (p.retain) await this.shared.retained.set(topic, msg, p.qos, p.properties);
    const n = this.ctx.broker.publishTopic(msg);
    // QoS 1/2: what absent persistent sessions must get is on disk before the acknowledgement.
    if (p.qos > 0) await this.shared.sessions.flush();
    ack(n === 0 ? 0x10 : 0);
  }

  /** ACL decision for a publish topic, cached per connection. */
  private mayPublish(topic: string): boolean {
    return this.publishAcl.allows(topic);
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------

  private async onSubscribe(p: ISubscribePacket): Promise<void> {
    const granted: number[] = [];
    const subId = p.properties?.subscriptionIdentifier;
    const v5 = this.version === 5;
    if (v5 && p.subscriptions.some((s) => s.nl && s.topic.startsWith('$share/'))) {
      return this.disconnect(0x82, 'no local cannot be set on a shared subscription [MQTT-3.8.3-4]');
    }
    for (const s of p.subscriptions) {
      const parsed = MqttConnection.parseFilter(s.topic);
      if (typeof parsed === 'string') {
        granted.push(v5 ? 0x8f : 0x80);
        continue;
      }
      const { filter, share, mailbox } = parsed;
      const sysTopic = filter.startsWith('$SYS');
      const allowed =
        mailbox !== undefined ||
        (this.shared.acl.allows(this.aclSubject(), 'subscribe', filter) &&
          (!sysTopic || this.principal.role !== 'user') &&
          (await this.ctx.broker.authorizeTopic(this.principal, filter)) === undefined);
      if (!allowed) {
        granted.push(v5 ? 0x87 : 0x80);
        continue;
      }
      const existing = this.subscriptions.get(s.topic);
      if (existing) this.removeSubscription(existing);
      else if (this.subscriptions.size >= this.ctx.config.maxSubscriptionsPerConnection) {
        granted.push(v5 ? 0x97 : 0x80);
        continue;
      }
      const qos = Math.min(s.qos, 2) as QoS;
      const sub = new MqttSubscription(this, filter, qos, s.nl ?? false, s.rap ?? false, mailbox, subId, share);
      this.attach(sub);
      granted.push(qos);
      // Retained messages: rh 0 always, 1 only for a new subscription, 2 never; never for shared subscriptions.
      const rh = s.rh ?? 0;
      if (mailbox === undefined && share === undefined && (rh === 0 || (rh === 1 && !existing))) {
        for (const r of this.shared.retained.matching(filter)) {
          if (!inAudience(r.msg.audience, this.principal)) continue;
          this.deliver(sub, r.msg, { redelivered: false, settle: undefined }, true, r.qos);
        }
      }
    }
    if (this.sessionKept) await this.shared.sessions.saveSubscriptions(this.clientId, this.subscriptionRecords());
    this.write(this.gen({ cmd: 'suback', messageId: p.messageId!, granted }));
  }

  private attach(sub: MqttSubscription): void {
    this.subscriptions.set(sub.key, sub);
    this.countPlain(sub, 1);
    if (sub.mailbox !== undefined) this.ctx.broker.subscribeUser(this.principal.userId, sub.mailbox, sub);
    else if (sub.share !== undefined) this.ctx.broker.subscribeShared(sub.share, sub.filter, sub);
    else this.ctx.broker.subscribeTopic(sub.filter, sub);
  }

  private removeSubscription(sub: MqttSubscription): void {
    this.subscriptions.delete(sub.key);
    this.countPlain(sub, -1);
    if (sub.mailbox !== undefined) this.ctx.broker.unsubscribeUser(this.principal.userId, sub.mailbox, sub);
    else if (sub.share !== undefined) this.ctx.broker.unsubscribeShared(sub.share, sub.filter, sub);
    else this.ctx.broker.unsubscribeTopic(sub.filter, sub);
  }

  /** Keeps count of plain topic subscriptions and wildcard ones among them (whether deliveries may overlap). */
  private countPlain(sub: MqttSubscription, delta: 1 | -1): void {
    if (sub.mailbox !== undefined || sub.share !== undefined) return;
    this.plainSubscriptions += delta;
    if (/[+#]/.test(sub.filter)) this.wildcardSubscriptions += delta;
  }

  /** Parses `$share/{group}/{filter}`, `$user/{name}` or a plain filter; a string is the reason it is not valid. */
  private static parseFilter(raw: string): { filter: string; share?: string; mailbox?: string } | string {
    if (raw.startsWith('$share/')) {
      const rest = raw.slice(7);
      const slash = rest.indexOf('/');
      const group = slash > 0 ? rest.slice(0, slash) : '';
      const filter = rest.slice(slash + 1);
      if (!group || /[+#]/.test(group) || slash < 0 || !filter) return 'shared subscriptions look like $share/{group}/{filter}';
      return filterProblem(filter) ?? { filter, share: group };
    }
    if (raw.startsWith('$user/')) {
      const name = raw.slice(6);
      if (!name || /[+#]/.test(name)) return '$user/{name} takes one mailbox name without wildcards';
      return { filter: raw, mailbox: name };
    }
    return filterProblem(raw) ?? { filter: raw };
  }

  private aclSubject(): AclSubject {
    return { principal: this.principal, clientId: this.clientId, anonymous: this.anonymous };
  }

  private async onUnsubscribe(p: IUnsubscribePacket): Promise<void> {
    const codes: number[] = [];
    for (const filter of p.unsubscriptions) {
      const sub = this.subscriptions.get(filter);
      if (sub) this.removeSubscription(sub);
      codes.push(sub ? 0 : 0x11);
    }
    if (this.sessionKept) await this.shared.sessions.saveSubscriptions(this.clientId, this.subscriptionRecords());
    this.write(this.gen(this.version === 5 ? { cmd: 'unsuback', messageId: p.messageId!, granted: codes } : { cmd: 'unsuback', messageId: p.messageId!, granted: [] }));
  }

  // ---- delivery to the client -------------------------------------------------------

  hasCapacity(): boolean {
    return (
      !this.closed &&
      this.inflight.size < Math.min(this.clientReceiveMaximum, this.ctx.config.mqttMaxInflight) &&
      this.budget.mayFly() &&
      this.transport.buffered() < this.ctx.config.slowConsumerBytes / 2
    );
  }

  deliver(sub: MqttSubscription, msg: CoreMessage, delivery: Delivery, retained: boolean, retainedQos?: number): void {
    if (this.closed) {
      delivery.settle?.('requeue');
      return;
    }
    if (sub.noLocal && msg.publisherSession === this.id) {
      delivery.settle?.('ack');
      return;
    }
    if (msg.expiresAt !== undefined && msg.expiresAt <= this.ctx.clock.now()) {
      delivery.settle?.('ack'); // expired: not delivered [MQTT-3.3.2-5]
      return;
    }
    if (this.waitingLive && !retained) {
      const bytes = pinnedSize(msg);
      this.waitingLive.push([sub, msg, delivery, bytes]);
      if (!this.budget.hold(bytes)) this.overBudget();
      return;
    }
    let qos = Math.min(sub.qos, retainedQos ?? msg.qos) as QoS;
    // Live messages go out with retain 0, unless the subscription asked for retain-as-published.
    let retain = retained || (sub.retainAsPublished && msg.retain);
    let ids: SubscriptionIds = sub.subscriptionId;
    if (!retained && this.wildcardSubscriptions > 0 && this.plainSubscriptions > 1 && sub.mailbox === undefined && sub.share === undefined && msg.target.kind === 'topic') {
      // Several of this client's subscriptions may match: one copy for all of them, at the highest
      // QoS granted, with every matching subscription identifier [MQTT-3.3.4-3, -5].
      if (this.mergedNow.has(msg.id)) {
        delivery.settle?.('ack');
        return;
      }
      if (this.mergedNow.size === 0) queueMicrotask(() => this.mergedNow.clear());
      this.mergedNow.add(msg.id);
      const all = sub.subscriptionId !== undefined ? [sub.subscriptionId] : [];
      for (const other of this.subscriptions.values()) {
        if (other === sub || other.mailbox !== undefined || other.share !== undefined) continue;
        if (other.noLocal && msg.publisherSession === this.id) continue;
        if (!topicMatches(other.filter, msg.target.topic)) continue;
        qos = Math.max(qos, Math.min(other.qos, msg.qos)) as QoS;
        retain ||= other.retainAsPublished && msg.retain;
        if (other.subscriptionId !== undefined && !all.includes(other.subscriptionId)) all.push(other.subscriptionId);
      }
      ids = all.length === 0 ? undefined : all.length === 1 ? all[0] : all.sort((x, y) => x - y);
    }
    if (qos > 0 && (this.held.length > 0 || !this.hasWindow())) {
      const bytes = pinnedSize(msg);
      this.held.push({ msg, delivery, qos, retain, subscriptionIds: ids, bytes });
      if (!this.budget.hold(bytes)) return this.overBudget();
      if (this.held.length > this.ctx.config.maxUnackedPerSubscription * 10) this.disconnect(0x97, 'slow consumer: too many messages wait for acknowledgements');
      return;
    }
    this.send(msg, qos, retain, ids, delivery);
  }

  /** Room for one more QoS 1/2 message: the client's window (count) and the byte budget. */
  private hasWindow(): boolean {
    return this.inflight.size < Math.min(this.clientReceiveMaximum, this.ctx.config.mqttMaxInflight) && this.budget.mayFly();
  }

  /** The client pins more bytes than maxHeldBytesPerConnection: it is cut as a slow consumer. */
  private overBudget(): void {
    const reason = this.budget.describe();
    this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'slow_consumer' });
    this.ctx.log.debug({ session: this.id, clientId: this.clientId, reason }, 'MQTT client cut: over its byte budget');
    this.disconnect(0x97, reason);
  }

  /**
   * Writes one PUBLISH; QoS 0 frames are encoded once per message and shared.
   * For a kept session a QoS 1/2 message is written to the session's queue
   * before it is sent (so neither a drop nor a crash loses it), unless it
   * came from there (`row`). Returns the packet id used.
   */
  private send(msg: CoreMessage, qos: QoS, retain: boolean, subscriptionIds: SubscriptionIds, delivery: Delivery, row?: Promise<string>, resendId?: number): number | undefined {
    let topic = mqttTopicOf(msg);
    const properties = this.version === 5 ? (publishProperties(msg, subscriptionIds, this.ctx.clock.now()) as IPublishPacket['properties'] & object) : {};
    // Topic aliases towards a v5 client that accepts them: the topic once, then only its alias.
    let aliased = false;
    if (this.clientAliasMax > 0) {
      const known = this.aliasesOut.get(topic);
      if (known !== undefined) {
        properties.topicAlias = known;
        topic = '';
        aliased = true;
      } else if (this.aliasesOut.size < this.clientAliasMax) {
        const alias = this.aliasesOut.size + 1;
        this.aliasesOut.set(topic, alias);
        properties.topicAlias = alias;
        aliased = true;
      }
    }
    const hasProps = Object.keys(properties).length > 0;
    let frame: Buffer;
    let messageId: number | undefined;
    if (qos === 0 && subscriptionIds === undefined && msg.expiresAt === undefined && !aliased) {
      const key = `mqtt${this.version}${retain ? 'r' : ''}`;
      let cached = msg.encoded.get(key);
      if (!cached) {
        cached = this.gen({ cmd: 'publish', topic, payload: msg.body, qos: 0, retain, dup: false, ...(hasProps ? { properties } : {}) });
        msg.encoded.set(key, cached);
      }
      frame = cached;
    } else {
      messageId = resendId ?? this.allocateId();
      const dup = resendId !== undefined || delivery.redelivered;
      frame = this.gen({ cmd: 'publish', topic, payload: msg.body, qos, retain, dup, messageId, ...(hasProps ? { properties } : {}) });
      if (qos > 0) {
        if (!row && this.sessionKept) row = this.shared.sessions.keep(this.clientId, msg, qos, subscriptionIds, undefined, messageId);
        const bytes = pinnedSize(msg);
        this.budget.fly(bytes);
        this.inflight.set(messageId, { msg, delivery, qos, row, released: false, bytes });
      }
    }
    if (frame.length > this.clientMaxPacket) {
      // [MQTT-3.1.2-25]: never send a packet larger than the client's maximum; it is dropped as if delivered.
      if (messageId !== undefined) this.settleOut(messageId, 'ack');
      else delivery.settle?.('ack');
      return messageId;
    }
    this.delivered.inc();
    this.write(frame);
    if (qos === 0) delivery.settle?.('ack');
    return messageId;
  }

  private allocateId(): number {
    for (let i = 0; i < 65_535; i++) {
      const id = this.nextId;
      this.nextId = this.nextId === 65_535 ? 1 : this.nextId + 1;
      if (!this.inflight.has(id) && !this.reserved.has(id)) return id;
    }
    throw new Error('no free MQTT packet id');
  }

  private settleOut(messageId: number | undefined, outcome: 'ack'): void {
    const f = messageId !== undefined ? this.inflight.get(messageId) : undefined;
    if (!f) return; // a late or repeated acknowledgement
    this.inflight.delete(messageId!);
    this.budget.land(f.bytes);
    if (f.row) void f.row.then((id) => this.deleteRow(id));
    f.delivery.settle?.(outcome);
    // Held messages go straight out (not through deliver(), which would queue them behind themselves).
    while (this.held.length > 0 && this.hasCapacity()) {
      const h = this.held.shift()!;
      this.budget.unhold(h.bytes);
      if (h.msg.expiresAt !== undefined && h.msg.expiresAt <= this.ctx.clock.now()) {
        h.delivery.settle?.('ack');
        continue;
      }
      this.send(h.msg, h.qos, h.retain, h.subscriptionIds, h.delivery);
    }
    if (this.replay && !this.replay.loading) void this.pumpReplay().catch((err: unknown) => this.failed(err, 'stored queue'));
    for (const sub of this.subscriptions.values()) this.ctx.broker.consumerReady(sub);
  }

  // ---- output and ending ------------------------------------------------------------

  private gen(p: Packet): Buffer {
    // v5 acknowledgements without a reason code go out in the 2-byte short form (success, no properties),
    // as the spec allows [MQTT-3.4.2.1]; mqtt-packet would otherwise add a 0x00 reason and an empty
    // property length, which some deployed clients (paho-mqtt 1.6 for Python on PUBREL) cannot read.
    if (this.version === 5 && ACK_COMMANDS.has(p.cmd) && (p as { reasonCode?: number }).reasonCode === undefined && !(p as { properties?: object }).properties) {
      return mqttPacket.generate({ ...p, reasonCode: 0 } as Packet, { protocolVersion: 5 });
    }
    return mqttPacket.generate(p, { protocolVersion: this.version });
  }

  private write(data: Buffer): void {
    if (this.closed) return;
    this.transport.write(data);
    if (this.transport.buffered() > this.ctx.config.slowConsumerBytes) {
      this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'slow_consumer' });
      this.will = undefined;
      this.end();
    }
  }

  /** Ends with a v5 DISCONNECT carrying the reason (v3 has no server DISCONNECT: the connection just closes). */
  private disconnect(reasonCode: number, reason: string): void {
    if (this.closed) return;
    if (this.connected && this.version === 5) {
      const withReason = this.gen({ cmd: 'disconnect', reasonCode, properties: { reasonString: reason.slice(0, 300) } });
      // [MQTT-3.14.2-3]: the reason string is left out rather than exceed the client's maximum packet size.
      this.write(withReason.length <= this.clientMaxPacket ? withReason : this.gen({ cmd: 'disconnect', reasonCode }));
    }
    this.end();
  }

  /** Another connection with this client id took over (here or on another node). */
  takenOver(): void {
    this.disconnect(0x8e, 'session taken over by another connection with the same client id');
  }

  close(reason: CloseReason): void {
    const code = reason.code === 'shutdown' ? 0x8b : reason.code === 'kicked' ? 0x98 : 0x87;
    this.disconnect(code, reason.message);
  }

  private end(): void {
    if (this.closed) return;
    // Read again (and discard) so that the client's close is seen and the socket is released.
    if (this.pausedFor.size > 0) this.transport.resume();
    this.transport.close();
    this.onTransportClosed();
  }

  /** The network connection is gone: clean up, and publish the will if the client did not say goodbye. */
  onTransportClosed(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.keepAliveTimer);
    clearInterval(this.keepAliveTimer);
    // How long the session outlives the connection (0: it ends now), read before it is detached.
    const sessionSeconds = this.sessionKept ? (this.shared.sessions.get(this.clientId)?.record.expirySeconds ?? 0) : 0;
    for (const sub of [...this.subscriptions.values()]) this.removeSubscription(sub);
    // A kept session's in-flight messages are in its stored queue already (the session owns them now);
    // what had not been sent yet goes there too.
    const unacknowledged: { msg: CoreMessage; qos: number; subscriptionId: SubscriptionIds }[] = [];
    for (const f of this.inflight.values()) f.delivery.settle?.(f.row ? 'ack' : 'requeue');
    this.inflight.clear();
    const waiting: Held[] = [...this.held];
    // Live messages that waited for the replay: one entry per message, for all its subscriptions.
    const live = new Map<string, Held>();
    for (const [sub, msg, delivery] of this.waitingLive ?? []) {
      const qos = Math.min(sub.qos, msg.qos) as QoS;
      const seen = live.get(msg.id);
      if (!seen || sub.mailbox !== undefined || sub.share !== undefined) {
        const h: Held = { msg, delivery, qos, retain: false, subscriptionIds: sub.subscriptionId, bytes: 0 };
        waiting.push(h);
        if (sub.mailbox === undefined && sub.share === undefined) live.set(msg.id, h);
        continue;
      }
      delivery.settle?.('ack');
      seen.qos = Math.max(seen.qos, qos) as QoS;
      if (sub.subscriptionId !== undefined) {
        const ids = seen.subscriptionIds === undefined ? [] : Array.isArray(seen.subscriptionIds) ? seen.subscriptionIds : [seen.subscriptionIds];
        if (!ids.includes(sub.subscriptionId)) seen.subscriptionIds = [...ids, sub.subscriptionId].sort((x, y) => x - y);
      }
    }
    for (const h of waiting) {
      if (this.sessionKept && h.qos > 0) {
        unacknowledged.push({ msg: h.msg, qos: h.qos, subscriptionId: h.subscriptionIds });
        h.delivery.settle?.('ack');
      } else {
        h.delivery.settle?.('requeue');
      }
    }
    this.held.length = 0;
    this.waitingLive = undefined;
    this.replay = undefined;
    this.budget.clear();
    this.pausedFor.clear();
    if (this.sessionKept) void this.shared.sessions.detach(this.clientId, unacknowledged);
    if (this.connected) {
      if (this.shared.clients.get(this.clientId) === this) this.shared.clients.delete(this.clientId);
      this.ctx.sessions.remove(this);
      // This node settles the will now (publishes or has discarded it): the others need not keep it.
      if (this.heldWill) this.shared.cluster?.dropWill(this.clientId, this.heldWill);
      if (this.will) this.publishWill(this.will, sessionSeconds);
    }
  }

  private static willMessage(will: NonNullable<IConnectPacket['will']>): CoreMessage {
    return createMessage({
      target: { kind: 'topic', topic: will.topic },
      body: typeof will.payload === 'string' ? Buffer.from(will.payload) : will.payload,
      qos: (will.qos ?? 0) as QoS,
      retain: will.retain,
      contentType: will.properties?.contentType,
      ...payloadFormatOf(will.properties),
      headers: mqttHeaders(will.properties),
    });
  }

  /**
   * Publishes the will after its delay or when the session ends, whichever
   * is first [MQTT-3.1.3.2.2]: a session that ends with the connection
   * (expiry 0) sends it at once.
   */
  private publishWill(will: NonNullable<IConnectPacket['will']>, sessionSeconds: number): void {
    const send = (): void => {
      const msg = MqttConnection.willMessage(will);
      if (will.retain) void this.shared.retained.set(will.topic, msg, (will.qos ?? 0) as QoS, will.properties);
      this.ctx.broker.publishTopic(msg);
    };
    const delay = Math.min(will.properties?.willDelayInterval ?? 0, sessionSeconds);
    if (delay > 0) {
      const clientId = this.clientId;
      const timer = setTimeout(() => {
        // A client that came back with the same id in time cancels its will [MQTT-3.1.3-9].
        if (!this.shared.clients.has(clientId)) send();
      }, delay * 1000);
      timer.unref();
    } else {
      send();
    }
  }
}
