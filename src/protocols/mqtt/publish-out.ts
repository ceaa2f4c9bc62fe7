/**
 * PUBLISH to the client: QoS 0 frames encoded once per message and shared;
 * QoS 1/2 within the client's window (its Receive Maximum, ours, and the
 * byte budget), held in order beyond it; one copy for overlapping
 * subscriptions; topic aliases towards v5 clients; the acknowledgements
 * (PUBACK, PUBREC → PUBREL, PUBCOMP). A kept session's messages are written
 * to its stored queue before they are sent, so neither a drop nor a crash
 * loses them; replay.ts sends that queue again on reconnect.
 */
import type { IPublishPacket, IPubrecPacket } from 'mqtt-packet';
import { outageLog, type OutageLog } from '../../core/background.js';
import type { Delivery } from '../../core/broker.js';
import { pinnedSize } from '../../core/delivery-budget.js';
import type { CoreMessage } from '../../core/message.js';
import { mqttTopicOf, publishProperties, type SubscriptionIds } from './properties.js';
import { encodePublish } from './publish-codec.js';
import { RC } from './reason-codes.js';
import type { Held, MqttClientState, MqttSubscription, QoS } from './state.js';

/** A 3.1/3.1.1 PUBLISH has no properties (one shared empty object, never written to: no alias is set for them). */
const NO_PROPERTIES: NonNullable<IPublishPacket['properties']> = Object.freeze({});
/** The keys of a message's shared QoS 0 frame, by protocol version and retain flag. */
const CACHE_KEYS: Record<number, readonly [string, string]> = { 3: ['mqtt3', 'mqtt3r'], 4: ['mqtt4', 'mqtt4r'], 5: ['mqtt5', 'mqtt5r'] };

/** Room for one more message now: the window (count and bytes) and the socket's buffer. */
export function hasCapacity(c: MqttClientState): boolean {
  return !c.closed && hasWindow(c) && c.window.writable(c.transport.buffered());
}

/** Room for one more QoS 1/2 message: the client's window (count) and the byte budget. */
function hasWindow(c: MqttClientState): boolean {
  return c.inflight.size < Math.min(c.clientReceiveMaximum, c.ctx.config.mqttMaxInflight) && c.window.mayFly();
}

/** A message for one of the client's subscriptions (`retained`: sent because it subscribed, at `retainedQos`). */
export function deliver(c: MqttClientState, sub: MqttSubscription, msg: CoreMessage, delivery: Delivery, retained: boolean, retainedQos?: number): void {
  if (c.closed) {
    delivery.settle?.('requeue');
    return;
  }
  if (sub.noLocal && msg.publisherSession === c.id) {
    delivery.settle?.('ack');
    return;
  }
  if (msg.expiresAt !== undefined && msg.expiresAt <= c.ctx.clock.now()) {
    delivery.settle?.('ack'); // expired: not delivered [MQTT-3.3.2-5]
    return;
  }
  if (c.storeDelivers && !retained && msg.qos > 0 && sub.qos > 0 && msg.target.kind === 'topic' && sub.mailbox === undefined && sub.share === undefined) {
    // Cluster mode, persistent session: the publishing node stored this message for the session; it comes from there, once.
    delivery.settle?.('ack');
    return;
  }
  if (c.waitingLive && !retained) {
    const bytes = pinnedSize(msg);
    c.waitingLive.push([sub, msg, delivery, bytes]);
    if (!c.window.holdAside(bytes)) overBudget(c, c.window.budget.describe());
    return;
  }
  let qos = Math.min(sub.qos, retainedQos ?? msg.qos) as QoS;
  // Live messages go out with retain 0, unless the subscription asked for retain-as-published.
  let retain = retained || (sub.retainAsPublished && msg.retain);
  let ids: SubscriptionIds = sub.subscriptionId;
  if (!retained && c.wildcardSubscriptions > 0 && c.plainSubscriptions > 1 && sub.mailbox === undefined && sub.share === undefined && msg.target.kind === 'topic') {
    // Several of this client's subscriptions may match: one copy for all of them, at the highest
    // QoS granted, with every matching subscription identifier [MQTT-3.3.4-3, -5].
    if (c.mergedNow.has(msg.id)) {
      delivery.settle?.('ack');
      return;
    }
    if (c.mergedNow.size === 0) queueMicrotask(() => c.mergedNow.clear());
    c.mergedNow.add(msg.id);
    const all = sub.subscriptionId !== undefined ? [sub.subscriptionId] : [];
    // The index walks only the matching branches: a client may hold a thousand filters.
    c.plainIndex.match(msg.target.topic, (other) => {
      if (other === sub) return;
      if (other.noLocal && msg.publisherSession === c.id) return;
      qos = Math.max(qos, Math.min(other.qos, msg.qos)) as QoS;
      retain ||= other.retainAsPublished && msg.retain;
      if (other.subscriptionId !== undefined && !all.includes(other.subscriptionId)) all.push(other.subscriptionId);
    });
    ids = all.length === 0 ? undefined : all.length === 1 ? all[0] : all.sort((x, y) => x - y);
  }
  if (qos > 0 && c.storeDelivers && !retained && msg.target.kind === 'topic' && sub.mailbox === undefined && sub.share === undefined) {
    // Cluster mode, persistent session: the publishing node stored this message for the session; it comes from there, once.
    delivery.settle?.('ack');
    return;
  }
  if (qos > 0) {
    // Held behind earlier messages or beyond the window; a client too far behind is cut.
    const offer = c.window.offer(c.held, { msg, delivery, qos, retain, subscriptionIds: ids, bytes: pinnedSize(msg) }, hasWindow(c));
    if (offer !== 'send') {
      if (offer === 'held') return;
      if (offer.over === 'bytes') return overBudget(c, offer.reason);
      return c.disconnect(RC.quotaExceeded, 'slow consumer: too many messages wait for acknowledgements');
    }
  }
  send(c, msg, qos, retain, ids, delivery);
}

/** The client pins more bytes than maxHeldBytesPerConnection: it is cut as a slow consumer. */
export function overBudget(c: MqttClientState, reason: string): void {
  c.ctx.log.debug({ session: c.id, clientId: c.clientId, reason }, 'MQTT client cut: over its byte budget');
  c.disconnect(RC.quotaExceeded, reason);
}

/**
 * Writes one PUBLISH; QoS 0 frames are encoded once per message and shared.
 * For a kept session a QoS 1/2 message is written to the session's queue
 * before it is sent (so neither a drop nor a crash loses it), unless it
 * came from there (`row`). Returns the packet id used.
 */
export function send(c: MqttClientState, msg: CoreMessage, qos: QoS, retain: boolean, subscriptionIds: SubscriptionIds, delivery: Delivery, row?: Promise<string>, resendId?: number): number | undefined {
  let topic = mqttTopicOf(msg);
  const properties = c.version === 5 ? (publishProperties(msg, subscriptionIds, c.ctx.clock.now()) as IPublishPacket['properties'] & object) : NO_PROPERTIES;
  // Topic aliases towards a v5 client that accepts them: the topic once, then only its alias.
  let aliased = false;
  /** The topic whose alias this packet sets (it names the topic once): undone if the packet is not sent. */
  let announced: string | undefined;
  if (c.clientAliasMax > 0) {
    const known = c.aliasesOut.get(topic);
    if (known !== undefined) {
      properties.topicAlias = known;
      topic = '';
      aliased = true;
    } else if (c.aliasesOut.size < c.clientAliasMax) {
      const alias = c.aliasesOut.size + 1;
      c.aliasesOut.set(topic, alias);
      properties.topicAlias = alias;
      aliased = true;
      announced = topic;
    }
  }
  const hasProps = properties !== NO_PROPERTIES && Object.keys(properties).length > 0;
  let frame: Buffer;
  let messageId: number | undefined;
  if (qos === 0 && subscriptionIds === undefined && msg.expiresAt === undefined && !aliased) {
    const key = CACHE_KEYS[c.version]![retain ? 1 : 0]!;
    let cached = msg.encoded.get(key);
    if (!cached) {
      cached = hasProps
        ? c.gen({ cmd: 'publish', topic, payload: msg.body, qos: 0, retain, dup: false, properties })
        : encodePublish(topic, msg.body, 0, retain, false, undefined, c.version);
      msg.encoded.set(key, cached);
    }
    frame = cached;
  } else {
    messageId = resendId ?? allocateId(c);
    const dup = resendId !== undefined || delivery.redelivered;
    frame = hasProps
      ? c.gen({ cmd: 'publish', topic, payload: msg.body, qos, retain, dup, messageId, properties })
      : encodePublish(topic, msg.body, qos, retain, dup, messageId, c.version);
    if (qos > 0) {
      if (!row && c.sessionKept) {
        // Its row is this connection's from the start: a later read of the queue (a wake-up) does not send it again.
        const kept = c.shared.sessions.keep(c.clientId, msg, qos, subscriptionIds, undefined, messageId);
        c.keeping.add(kept);
        kept.then(
          (id) => (c.storeRows.add(id), c.shared.sessions.markSent(c.clientId, id)),
          () => undefined, // counted and logged by keep()
        ).finally(() => c.keeping.delete(kept));
        row = kept;
      }
      const bytes = pinnedSize(msg);
      c.window.budget.fly(bytes);
      c.inflight.set(messageId, { msg, delivery, qos, row, released: false, bytes });
    }
  }
  if (frame.length > c.clientMaxPacket) {
    // [MQTT-3.1.2-25]: never send a packet larger than the client's maximum; it is dropped as if delivered.
    // The alias it would have set was never told to the client: the next packet on the topic names it again.
    if (announced !== undefined) c.aliasesOut.delete(announced);
    if (messageId !== undefined) settleOut(c, messageId);
    else delivery.settle?.('ack');
    return messageId;
  }
  c.delivered.inc();
  c.write(frame);
  if (qos === 0) delivery.settle?.('ack');
  return messageId;
}

function allocateId(c: MqttClientState): number {
  for (let i = 0; i < 65_535; i++) {
    const id = c.nextId;
    c.nextId = c.nextId === 65_535 ? 1 : c.nextId + 1;
    if (!c.inflight.has(id) && !c.reserved.has(id)) return id;
  }
  throw new Error('no free MQTT packet id');
}

/** PUBREC for a QoS 2 message sent: PUBREL goes back (0x92 for an id not in flight). */
export function handlePubrec(c: MqttClientState, p: IPubrecPacket): void {
  const f = p.messageId !== undefined ? c.inflight.get(p.messageId) : undefined;
  if (f) {
    f.released = true;
    if (f.row) {
      const id = p.messageId!;
      const rows = storedRows(c);
      void f.row.then((rowId) => c.ctx.store.setMqttQueuedState(rowId, id, true)).then(() => rows.ok(), (err: unknown) => rows.failed(err));
    }
  }
  c.write(c.gen({ cmd: 'pubrel', messageId: p.messageId!, ...(f ? {} : { reasonCode: RC.packetIdNotFound }) }));
}

/**
 * The final acknowledgement (PUBACK, PUBCOMP) of a message in flight: its
 * stored row goes, and the window opens for held messages, the stored
 * queue being replayed, and the broker's waiting messages.
 */
export function settleOut(c: MqttClientState, messageId: number | undefined): void {
  const f = messageId !== undefined ? c.inflight.get(messageId) : undefined;
  if (!f) return; // a late or repeated acknowledgement
  c.inflight.delete(messageId!);
  c.window.budget.land(f.bytes);
  if (f.row) {
    const rows = storedRows(c);
    void f.row.then((id) => deleteRow(c, id), (err: unknown) => rows.failed(err));
  }
  f.delivery.settle?.('ack');
  // Held messages go straight out (not through deliver(), which would queue them behind themselves).
  c.window.drain(
    [c.held],
    () => hasCapacity(c),
    (h) => {
      if (h.msg.expiresAt !== undefined && h.msg.expiresAt <= c.ctx.clock.now()) h.delivery.settle?.('ack');
      else send(c, h.msg, h.qos, h.retain, h.subscriptionIds, h.delivery);
    },
  );
  if (c.replay && !c.replay.loading) c.continueReplay();
  for (const sub of c.subscriptions.values()) c.ctx.broker.consumerReady(sub);
}

/**
 * Updates of a session's stored queue nobody waits for: one that fails leaves
 * the row as it was (the message comes again, flagged DUP), and an outage is
 * logged once for all connections.
 */
export function storedRows(c: MqttClientState): OutageLog {
  return outageLog(c.ctx.log, 'updating stored MQTT session messages');
}

/** Deletes a row of the session's queue, counting it for the replay's paging. */
export function deleteRow(c: MqttClientState, id: string): void {
  const r = c.replay;
  const rows = storedRows(c);
  void c.ctx.store.deleteMqttQueued(id).then(
    () => {
      if (r && r.taken.has(id)) r.deleted++;
      c.storeRows.delete(id);
      c.shared.sessions.forgetSent(c.clientId, id);
      rows.ok();
    },
    (err: unknown) => rows.failed(err),
  );
}

/**
 * The connection is gone: what is in flight is settled (a kept session's
 * rows are its own now), and what had not been sent yet is returned for a
 * kept session's queue (QoS 1/2) or given back to the broker.
 */
export function unsentOnClose(c: MqttClientState): { msg: CoreMessage; qos: number; subscriptionId: SubscriptionIds }[] {
  const unacknowledged: { msg: CoreMessage; qos: number; subscriptionId: SubscriptionIds }[] = [];
  if (!c.deliveryStateMade) {
    // Nothing was ever in flight or held: nothing to settle (and nothing to make just to discard).
    c.replay = undefined;
    return unacknowledged;
  }
  for (const f of c.inflight.values()) f.delivery.settle?.(f.row ? 'ack' : 'requeue');
  c.inflight.clear();
  const waiting: Held[] = c.window.takeAll(c.held);
  // Live messages that waited for the replay: one entry per message, for all its subscriptions.
  const live = new Map<string, Held>();
  for (const [sub, msg, delivery] of c.waitingLive ?? []) {
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
    if (c.sessionKept && h.qos > 0) {
      unacknowledged.push({ msg: h.msg, qos: h.qos, subscriptionId: h.subscriptionIds });
      h.delivery.settle?.('ack');
    } else {
      h.delivery.settle?.('requeue');
    }
  }
  c.waitingLive = undefined;
  c.replay = undefined;
  c.window.clear();
  return unacknowledged;
}
