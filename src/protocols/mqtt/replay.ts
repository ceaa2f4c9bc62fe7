/**
 * A resumed session's stored queue, sent before live traffic: a page of rows
 * at a time, as the client's window and the byte budget allow, while live
 * messages wait (`waitingLive`). Rows sent before the drop keep their packet
 * ids and go again with DUP set; a QoS 2 message whose PUBREC came back
 * before the drop only needs its PUBREL [MQTT-4.4.0-1].
 */
import type { Delivery } from '../../core/broker.js';
import { pinnedSize } from '../../core/delivery-budget.js';
import { createMessage } from '../../core/message.js';
import type { MqttQueuedRecord } from '../../store/store.js';
import { mqttHeaders, payloadFormatOf, type PersistedProperties } from './properties.js';
import { deleteRow, deliver, send, storedRows } from './publish-out.js';
import type { MqttClientState, QoS, Replay } from './state.js';

/** Rows of a resumed session's stored queue read at a time (more as the client acknowledges). */
const REPLAY_PAGE = 32;

const NO_DELIVERY: Delivery = { redelivered: false, settle: undefined };
/** A row sent before (its packet id or this node's memory says so): DUP, whatever packet id it gets now. */
const REDELIVERY: Delivery = { redelivered: true, settle: undefined };

/** Starts sending the stored queue (the session's subscriptions are restored already). */
export async function startReplay(c: MqttClientState): Promise<void> {
  const r: Replay = { rows: [], taken: new Set(), deleted: 0, loading: true, again: false };
  c.replay = r;
  // Rows being written for messages sent live are this connection's already: wait to know their ids.
  if (c.keeping.size > 0) await Promise.allSettled([...c.keeping]);
  // Rows this connection sent and has not seen deleted are not sent again (cluster mode reads the queue again on each wake-up).
  for (const id of c.storeRows) r.taken.add(id);
  r.loading = false;
  if (c.replay !== r || c.closed) return;
  await pumpReplay(c);
}

/** Sends stored rows while the window has room, reading the next page when one is used up; ends the replay when none are left. */
export async function pumpReplay(c: MqttClientState): Promise<void> {
  const r = c.replay;
  while (r && c.replay === r && !c.closed) {
    while (r.rows.length > 0 && c.hasCapacity()) sendStored(c, r.rows.shift()!);
    if (r.rows.length > 0 || r.loading) return; // the window is full: an acknowledgement calls again
    r.loading = true;
    let page: MqttQueuedRecord[];
    try {
      // Rows read before and not yet deleted come first again: skip them. The first page holds at
      // least a whole window, so that it has every row sent before the drop (their packet ids stay theirs).
      const first = r.taken.size === 0 ? c.ctx.config.mqttMaxInflight : 0;
      page = await c.ctx.store.loadMqttQueue(c.clientId, r.taken.size - r.deleted + first + REPLAY_PAGE);
    } finally {
      r.loading = false;
    }
    if (c.replay !== r || c.closed) return;
    r.rows = page.filter((q) => !r.taken.has(q.id));
    for (const q of r.rows) {
      r.taken.add(q.id);
      // Packet ids already used by waiting messages stay theirs.
      if (q.packetId !== null && !c.inflight.has(q.packetId)) c.reserved.add(q.packetId);
    }
    if (r.rows.length === 0) {
      if (!r.again) return endReplay(c);
      r.again = false; // rows were stored while this page was read: read once more
    }
  }
}

function sendStored(c: MqttClientState, q: MqttQueuedRecord): void {
  c.storeRows.add(q.id);
  // Sent before: by an earlier connection (its packet id is stored), or by this node when the store did not take the packet id or the deletion.
  const sentBefore = q.packetId !== null || c.shared.sessions.sentBefore(c.clientId, q.id);
  c.shared.sessions.markSent(c.clientId, q.id);
  const props = JSON.parse(q.properties) as PersistedProperties;
  if (props.expiresAt !== undefined && props.expiresAt <= c.ctx.clock.now() && q.packetId === null) {
    deleteRow(c, q.id);
    return;
  }
  const row = Promise.resolve(q.id);
  // A packet id still reserved is this row's; one taken meanwhile by another message gets the row a new id.
  const ownId = q.packetId !== null && c.reserved.delete(q.packetId) ? q.packetId : undefined;
  if (q.released && ownId !== undefined) {
    // QoS 2 whose PUBREC came back before the drop: only PUBREL remains [MQTT-4.4.0-1].
    const msg = createMessage({ target: { kind: 'topic', topic: q.topic }, body: q.body });
    const bytes = pinnedSize(msg);
    c.window.budget.fly(bytes);
    c.inflight.set(ownId, { msg, delivery: NO_DELIVERY, qos: 2, row, released: true, bytes });
    c.write(c.gen({ cmd: 'pubrel', messageId: ownId }));
    return;
  }
  const msg = createMessage({
    ...payloadFormatOf(props),
    expiresAt: props.expiresAt,
    replyTo: props.responseTopic,
    correlation: props.correlationData !== undefined ? Buffer.from(props.correlationData, 'base64') : undefined,
    target: q.topic.startsWith('$user/') ? { kind: 'user', userId: c.principal.userId, name: q.topic.slice(6) } : { kind: 'topic', topic: q.topic },
    body: q.body,
    qos: q.qos as QoS,
    contentType: props.contentType,
    headers: mqttHeaders({ ...(props.userProperties ? { userProperties: props.userProperties } : {}) }),
  });
  // Sent before with this packet id: again with DUP set [MQTT-4.4.0-1]; never sent: a new id.
  const packetId = send(c, msg, q.qos as QoS, false, props.subscriptionIdentifier, sentBefore ? REDELIVERY : NO_DELIVERY, row, ownId);
  if (packetId !== undefined && packetId !== ownId) {
    const rows = storedRows(c);
    void c.ctx.store.setMqttQueuedState(q.id, packetId, false).then(() => rows.ok(), (err: unknown) => rows.failed(err));
  }
}

/** The stored queue is sent: live messages that waited go out now, in order. */
function endReplay(c: MqttClientState): void {
  c.replay = undefined;
  c.reserved.clear();
  const live = c.waitingLive ?? [];
  c.waitingLive = undefined;
  for (const [sub, msg, d, bytes] of live) {
    c.window.budget.unhold(bytes);
    deliver(c, sub, msg, d, false);
  }
}
