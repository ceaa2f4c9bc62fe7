/**
 * One MQTT connection (3.1, 3.1.1 or 5.0, over TCP or WebSocket) on the
 * broker core: the dispatcher. The framer cuts the stream into whole
 * packets and mqtt-packet decodes them; packets are handled one at a time,
 * in order, by the handler of their type (as aedes' handlers/index.js and
 * mosquitto's read_handle.c):
 *
 *   CONNECT            connect.ts (credentials.ts, will.ts)
 *   PUBLISH, PUBREL    publish-in.ts
 *   PUBACK, PUBREC,
 *   PUBCOMP            publish-out.ts (replay.ts for a resumed session)
 *   SUBSCRIBE,
 *   UNSUBSCRIBE        subscribe.ts
 *
 * A handler ends the connection by throwing; `failed` is the one place that
 * turns what it threw into a DISCONNECT or a refusing CONNACK
 * (reason-codes.ts). The state the handlers share is state.ts.
 */
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';
import { loopTurn, turnNow } from '../../clock.js';
import type { HeraldContext } from '../../context.js';
import { logRejection } from '../../core/background.js';
import type { Delivery } from '../../core/broker.js';
import type { CoreMessage } from '../../core/message.js';
import type { Protocol } from '../../core/session.js';
import type { Admission } from '../../transports/admission.js';
import { TURN_MESSAGES } from '../../transports/read-budget.js';
import { handleConnect } from './connect.js';
import { MqttFrameError, MqttFramer } from './framer.js';
import { decodePublish, isPublish, ownPayload, PublishDecodeError } from './publish-codec.js';
import { handlePublish, handlePubrel } from './publish-in.js';
import { deliver, handlePubrec, hasCapacity, settleOut, unsentOnClose } from './publish-out.js';
import { failureFor, MqttError, RC, REFUSE } from './reason-codes.js';
import { pumpReplay, startReplay } from './replay.js';
import type { MqttShared } from './shared.js';
import { MqttClientState, type MqttSubscription, type MqttTransport } from './state.js';
import { handleSubscribe, handleUnsubscribe, removeSubscription } from './subscribe.js';
import { settleWill } from './will.js';

export type { MqttTransport } from './state.js';

/**
 * Packets parsed but not yet handled (behind a slow store write, or a
 * publisher over its rate): past either high mark the socket is not read
 * until the backlog is under both low marks.
 */
const INBOUND_HIGH_BYTES = 1024 * 1024;
const INBOUND_LOW_BYTES = 256 * 1024;
const INBOUND_HIGH_PACKETS = 1000;
const INBOUND_LOW_PACKETS = 100;

/**
 * One mqtt-packet parser for every connection. It is given whole packets
 * only (the framer's runs), so nothing of one connection stays in it
 * between calls but its `settings` (the protocol version later packets are
 * read with, from the CONNECT): each connection keeps its own and lends it
 * for the call. A parser per connection cost a stream object and
 * its buffers on every connect, a fifth of the memory of an idle one.
 */
interface SharedParser {
  parse(buf: Buffer): number;
  settings: object;
  /** Set once it met bytes it cannot read: it is then replaced (its position inside a packet is not reset). */
  error: Error | null;
  on(event: 'packet', f: (p: Packet) => void): void;
  on(event: 'error', f: (err: Error) => void): void;
}
function newParser(): SharedParser {
  const p = mqttPacket.parser() as unknown as SharedParser;
  p.on('packet', (packet) => reading?.parsed(packet));
  p.on('error', (err) => reading?.unparsable(err));
  return p;
}
let parser = newParser();
/** The connection whose bytes the parser is reading now (parse is synchronous). */
let reading: MqttConnection | undefined;

/** PINGREQ is read and PINGRESP written without mqtt-packet (the same two bytes in every version). */
const PINGREQ: Packet = { cmd: 'pingreq' };
const PINGRESP = Buffer.from([0xd0, 0x00]);

export class MqttConnection extends MqttClientState {
  /** The parser's state for this connection: its CONNECT once read (see SharedParser). */
  private parserSettings: object = {};
  /** Cuts the byte stream into whole packets (linear however it is split) before mqtt-packet sees them. */
  private readonly framer: MqttFramer;
  /** The stream broke (malformed or oversized packet): nothing more is read. */
  private faulted = false;
  private chain: Promise<void> = Promise.resolve();
  /** Packets in the chain, not yet handled: while there are any, a new packet waits behind them. */
  private waiting = 0;
  /** The event-loop iteration packets were last counted in, and how many (see parseRun). */
  private turn = -1;
  private turnPackets = 0;
  /** Runs of packets past this iteration's share, for the next one. */
  private deferred: Buffer[] | undefined;
  /** The stream broke while packets before the break were deferred: the fault, for after them. */
  private faultAfterDeferred: (() => void) | undefined;

  constructor(ctx: HeraldContext, shared: MqttShared, transport: MqttTransport, protocol: Protocol, remoteAddress: string, admission: Admission) {
    super(ctx, shared, transport, protocol, remoteAddress, admission);
    this.framer = new MqttFramer(ctx.config.mqttMaxPacketBytes);
    // A client that never completes CONNECT in time, or sends too much before it, is dropped
    // (MQTT has no way to tell a client that has not been sent a CONNACK why, short of one).
    admission.onLimit = (reason) => {
      this.ctx.log.debug({ session: this.id, reason }, 'MQTT connection cut before CONNECT');
      this.end();
    };
  }

  // ---- input -----------------------------------------------------------------------

  receive(data: Buffer): void {
    if (this.closed || this.faulted || this.faultAfterDeferred) return;
    this.lastRead = turnNow();
    try {
      this.framer.feed(data, this.parseWhole);
    } catch (err) {
      if (!(err instanceof MqttFrameError)) throw err;
      const then = (): void => {
        if (err.kind === 'malformed') return this.protocolError(err.message);
        this.failed(new MqttError(RC.packetTooLarge, `packet larger than ${this.ctx.config.mqttMaxPacketBytes} bytes (${err.message})`, 'too_large'), 'frame');
      };
      // The whole packets before the bad bytes are handled first, those deferred to the next iteration too.
      if (this.deferred) this.faultAfterDeferred = then;
      else this.fault(then);
    }
  }

  /**
   * The stream broke (a frame, or a packet that cannot be read): nothing
   * more is read, and the packets before the fault are handled first, so a
   * client learns of its CONNACK (and of what it published) before the
   * DISCONNECT.
   */
  private fault(then: () => void): void {
    if (this.faulted) return;
    this.faulted = true;
    if (this.waiting === 0) return then();
    this.chain = this.chain.then(then);
  }

  /**
   * A run of whole packets from the framer. PUBLISH of a connected client is
   * decoded here (publish-codec.ts); the other packets, and a v5 PUBLISH
   * with properties, go to mqtt-packet, which gets whole packets only, so it
   * never rescans a partial one (and keeps nothing of them).
   */
  private readonly parseWhole = (packets: Buffer): void => {
    if (this.deferred) this.deferred.push(packets);
    else this.parseRun(packets);
  };

  /**
   * Handles a run of whole packets, at most TURN_MESSAGES of this
   * connection's per event-loop iteration (a run of tiny packets, PINGREQs
   * say, would otherwise hold every other client for as long as its read
   * takes): the rest of the run waits, reading paused, for the next
   * iteration.
   */
  private parseRun(packets: Buffer): void {
    let at = 0;
    const end = packets.length;
    const turn = loopTurn();
    if (turn !== this.turn) {
      this.turn = turn;
      this.turnPackets = 0;
    }
    while (at < end && !this.closed && !this.faulted) {
      if (++this.turnPackets > TURN_MESSAGES) {
        this.deferred = [packets.subarray(at)];
        this.pauseReading('turn');
        setImmediate(this.parseDeferred);
        return;
      }
      // The framer has checked every header of the run: each packet is whole.
      let off = at + 1;
      let remaining = 0;
      let weight = 1;
      let b: number;
      do {
        b = packets[off++]!;
        remaining += (b & 0x7f) * weight;
        weight *= 128;
      } while (b & 0x80);
      const next = off + remaining;
      if (this.connected && isPublish(packets, at)) {
        let p: IPublishPacket | undefined;
        try {
          p = decodePublish(packets, at, next, this.version);
        } catch (err) {
          if (!(err instanceof PublishDecodeError)) throw err;
          return this.unparsable(err);
        }
        if (p) {
          this.enqueue(p);
          at = next;
          continue;
        }
      }
      if (remaining === 0 && packets[at] === 0xc0 && this.connected) this.enqueue(PINGREQ);
      else this.parseWithLibrary(packets.subarray(at, next));
      at = next;
    }
  }

  private readonly parseDeferred = (): void => {
    const runs = this.deferred ?? [];
    this.deferred = undefined;
    for (let i = 0; i < runs.length; i++) {
      this.parseRun(runs[i]!);
      const left = this.deferred as Buffer[] | undefined; // parseRun may have deferred again
      if (left) {
        // Used up again: the runs after it wait, in order, behind what is left of it.
        for (let j = i + 1; j < runs.length; j++) left.push(runs[j]!);
        return;
      }
    }
    const fault = this.faultAfterDeferred;
    this.faultAfterDeferred = undefined;
    if (fault) this.fault(fault);
    else this.resumeReading('turn');
  };

  private parseWithLibrary(packet: Buffer): void {
    parser.settings = this.parserSettings;
    reading = this;
    try {
      parser.parse(packet);
    } finally {
      // After a CONNECT the parser's settings are that packet (with its password): keep only what it reads later packets with.
      const settings = parser.settings as { cmd?: string; protocolVersion?: number; bridgeMode?: boolean };
      this.parserSettings = settings.cmd === 'connect' ? { protocolVersion: settings.protocolVersion, bridgeMode: settings.bridgeMode } : settings;
      reading = undefined;
      if (parser.error) parser = newParser();
    }
  }

  /** A packet the shared parser read from this connection's bytes (a PUBLISH's or will's payload is a view of them: see ownPayload). */
  parsed(p: Packet): void {
    if (p.cmd === 'publish' && Buffer.isBuffer(p.payload)) p.payload = ownPayload(p.payload);
    else if (p.cmd === 'connect' && p.will && Buffer.isBuffer(p.will.payload)) p.will.payload = ownPayload(p.will.payload);
    this.enqueue(p);
  }

  /** This connection's bytes cannot be read as a packet (the shared parser starts afresh for the next connection). */
  unparsable(err: Error): void {
    this.fault(() => this.protocolError(err.message));
  }

  /**
   * Packets are handled one at a time, in order; reading stops while too
   * many wait. When none waits, a packet is handled at once, and only one
   * whose handling waits for something (the store, the ACL hook, a rate
   * limit) starts the chain the packets after it wait on.
   */
  private enqueue(p: Packet): void {
    if (this.waiting === 0) {
      let pending: void | Promise<void>;
      try {
        pending = this.handle(p);
      } catch (err) {
        return this.failed(err, p.cmd);
      }
      if (pending === undefined) return;
      this.wait(p, pending);
      return;
    }
    this.wait(p, undefined);
  }

  /** Counts `p` among the packets waiting, and handles it after those before it (or waits for `started`, its handling begun). */
  private wait(p: Packet, started: Promise<void> | undefined): void {
    const bytes = (p.length ?? 0) + 2;
    this.waiting++;
    this.inboundBytes += bytes;
    this.inboundPackets++;
    if (this.inboundBytes > INBOUND_HIGH_BYTES || this.inboundPackets > INBOUND_HIGH_PACKETS) this.pauseReading('inbound');
    this.chain = (started ?? this.chain.then(() => this.handle(p)))
      .catch((err: unknown) => this.failed(err, p.cmd))
      .then(() => {
        this.waiting--;
        this.inboundBytes -= bytes;
        this.inboundPackets--;
        if (this.inboundBytes <= INBOUND_LOW_BYTES && this.inboundPackets <= INBOUND_LOW_PACKETS) this.resumeReading('inbound');
      });
  }

  /** The one place a handler's error becomes what the client is told (see reason-codes.ts). */
  private failed(err: unknown, what: string): void {
    const f = failureFor(err, this.connected);
    if (f.kind === 'internal') {
      this.ctx.log.error({ err, session: this.id }, 'MQTT packet handling failed');
      return this.disconnect(f.code, f.reason);
    }
    if (f.storeDown) this.ctx.log.warn({ err: f.storeDown.message, packet: what, session: this.id }, 'store unavailable; connection ended');
    if (f.kind === 'refuse') {
      if (!this.closed || f.storeDown) this.refuse(f.refusal, f.reason, f.metric);
      return;
    }
    if (f.metric) this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: f.metric });
    this.disconnect(f.code, f.reason);
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
      this.write(mqttPacket.generate({ cmd: 'connack', returnCode: REFUSE.version.v3, sessionPresent: false }, { protocolVersion: 4 }));
      return this.end();
    }
    this.disconnect(RC.malformedPacket, message);
  }

  /** Handles one packet: at once, or with a Promise when it must wait for something (thrown errors end the connection). */
  private handle(p: Packet): void | Promise<void> {
    if (this.closed) return;
    if ((p.length ?? 0) > this.ctx.config.mqttMaxPacketBytes) {
      throw new MqttError(RC.packetTooLarge, `packet larger than ${this.ctx.config.mqttMaxPacketBytes} bytes`, 'too_large');
    }
    if (!this.connected) {
      if (p.cmd !== 'connect') return this.protocolError(`first packet must be CONNECT, not ${p.cmd.toUpperCase()}`);
      return handleConnect(this, p);
    }
    switch (p.cmd) {
      case 'connect':
        throw new MqttError(RC.protocolError, 'a second CONNECT is a protocol error');
      case 'publish': {
        const wait = this.bucket.take();
        if (wait > 0) return this.throttle(wait).then(() => (this.closed ? undefined : handlePublish(this, p)));
        return handlePublish(this, p);
      }
      case 'puback':
      case 'pubcomp':
        return settleOut(this, p.messageId);
      case 'pubrec':
        return handlePubrec(this, p);
      case 'pubrel':
        return handlePubrel(this, p);
      case 'subscribe':
        return handleSubscribe(this, p);
      case 'unsubscribe':
        return handleUnsubscribe(this, p);
      case 'pingreq':
        return this.write(PINGRESP);
      case 'disconnect':
        // A normal DISCONNECT discards the will (v5 reason 0x04 asks to send it).
        if (!(this.version === 5 && p.reasonCode === RC.disconnectWithWill)) this.will = undefined;
        if (p.properties?.sessionExpiryInterval !== undefined) {
          this.shared.sessions.setExpiry(this.clientId, Math.min(p.properties.sessionExpiryInterval, this.ctx.config.mqttSessionExpirySeconds));
        }
        this.endReason = 'client disconnected';
        return this.end();
      default:
        throw new MqttError(RC.protocolError, `unexpected ${p.cmd.toUpperCase()} packet from a client`);
    }
  }

  // ---- delivery (the broker's consumers call in here) ------------------------------------

  hasCapacity(): boolean {
    return hasCapacity(this);
  }

  deliver(sub: MqttSubscription, msg: CoreMessage, delivery: Delivery, retained: boolean, retainedQos?: number): void {
    deliver(this, sub, msg, delivery, retained, retainedQos);
  }

  continueReplay(): void {
    void pumpReplay(this).catch((err: unknown) => this.failed(err, 'stored queue'));
  }

  pullStored(): void {
    if (this.closed || !this.sessionKept || !this.connected) return;
    if (this.replay) {
      this.replay.again = true;
      return;
    }
    void startReplay(this).catch((err: unknown) => this.failed(err, 'stored queue'));
  }

  // ---- ending --------------------------------------------------------------------------

  onTransportClosed(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.keepAliveTimer);
    clearInterval(this.keepAliveTimer);
    // How long the session outlives the connection (0: it ends now), read before it is detached.
    const sessionSeconds = this.sessionKept ? (this.shared.sessions.get(this.clientId)?.record.expirySeconds ?? 0) : 0;
    for (const sub of [...this.subscriptions.values()]) removeSubscription(this, sub);
    // A kept session's in-flight messages are in its stored queue already (the session owns them now);
    // what had not been sent yet goes there too.
    const unacknowledged = unsentOnClose(this);
    this.pausedFor.clear();
    if (this.sessionKept) void this.shared.sessions.detach(this.clientId, unacknowledged).catch(logRejection(this.ctx.log, 'keeping a disconnected MQTT session', { clientId: this.clientId }));
    if (this.connected) {
      if (this.shared.clients.get(this.clientId) === this) this.shared.clients.delete(this.clientId);
      this.ctx.sessions.remove(this, this.endReason);
      // This node settles the will now (publishes or has discarded it): the others need not keep it.
      settleWill(this, sessionSeconds);
    }
  }
}
