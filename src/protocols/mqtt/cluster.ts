/**
 * MQTT in cluster mode, on the cluster's control channel:
 *
 * - Client-id takeover (`mqtt.takeover`): before a node accepts a client id,
 *   every other node ends its connection with that id (if it is the same
 *   user's) and the node holding its stored session lets go of it, once its
 *   last writes are on disk; that node answers, and the new one waits for
 *   it, up to 3 s.
 * - Retained messages (`mqtt.retained`): one set on a node is applied to
 *   every other node's copy (the store has it already).
 * - Wills of a node that dies: each connected client's will is kept in the
 *   cluster's node records (`mqtt-wills`) as [u32 delay seconds][message];
 *   the node settles it itself when the connection ends, and only if the
 *   node dies does a live one publish it.
 * - Stored sessions of a fenced incarnation are adopted at each lease tick.
 * - Persistent sessions anywhere (`mqtt.wake`): the node where a QoS 1/2
 *   message is published stores it for every persistent session it
 *   matches (durable.ts) before acknowledging it, and wakes the holding
 *   node, which sends the new rows to its connected client. A holder that
 *   missed wake-ups finds the rows at its next lease tick, or when Redis
 *   is back.
 */
import type { QoS } from 'mqtt-packet';
import { decodeMessage, encodeMessage } from '../../bus/codec.js';
import { logRejection } from '../../core/background.js';
import type { HeraldContext } from '../../context.js';
import type { ClusterControl } from '../../core/cluster-link.js';
import type { CoreMessage } from '../../core/message.js';
import { ownerNode } from '../../store/leases.js';
import { DurableSessions } from './durable.js';
import { publishProperties } from './properties.js';
import type { MqttShared } from './shared.js';
import { willStillAllowed } from './will.js';

/** How long a new connection waits for the node holding its stored session to let go of it. */
const TAKEOVER_WAIT_MS = 3000;

interface Takeover {
  clientId: string;
  userId: string;
  /** The node that held the stored session when the takeover began (it answers), or null. */
  holder: string | null;
}

interface Retained {
  topic: string;
  qos: QoS;
  /** The message, encoded as on the bus, in base64. */
  m: string;
}

export function joinClusterMqtt(cluster: ClusterControl, ctx: Pick<HeraldContext, 'config' | 'store' | 'broker' | 'presence' | 'log' | 'clock'>, mqtt: MqttShared): void {
  const log = ctx.log.child({ component: 'cluster' });
  let stopped = false;
  cluster.onStop(async () => void (stopped = true));

  // ---- takeover ----
  cluster.on<Takeover, true>('mqtt.takeover', async (t) => {
    const conn = mqtt.clients.get(t.clientId);
    // A client id belongs to its user: another user's connection elsewhere does not end this one.
    if (conn && conn.principal.userId !== t.userId) {
      log.info({ clientId: t.clientId }, 'MQTT takeover by another user ignored');
    } else if (conn) {
      conn.takenOver();
      if (mqtt.clients.get(t.clientId) === conn) mqtt.clients.delete(t.clientId);
    }
    if (mqtt.sessions.holds(t.clientId)) await mqtt.sessions.release(t.clientId);
    // The holder answers (any incarnation of this node: an earlier one's sessions are this process's to settle or gone).
    return t.holder !== null && ownerNode(t.holder) === cluster.nodeId ? true : undefined;
  });

  // The live incarnations, as of the last lease renewal.
  let liveOwners: ReadonlySet<string> = new Set([cluster.owner]);
  void ctx.store.liveOwners().then(
    (owners) => (liveOwners = new Set(owners)),
    () => undefined, // the first lease renewal tells
  );
  const takeover = async (clientId: string, userId: string): Promise<void> => {
    const record = await ctx.store.getMqttSession(clientId).catch(() => null);
    const holder = record?.node ?? null;
    const holderNode = holder === null ? null : ownerNode(holder);
    // Wait for a holder that is alive by its lease (it may only be slow to hear us), never for a fenced one.
    const mustWait = holder !== null && holderNode !== null && holderNode !== cluster.nodeId && liveOwners.has(holder);
    const body: Takeover = { clientId, userId, holder };
    const answers = await cluster.survey<true>('mqtt.takeover', body, { waitFor: mustWait ? [holderNode] : [], timeoutMs: TAKEOVER_WAIT_MS });
    if (mustWait && !answers.has(holderNode)) log.warn({ clientId, holder }, 'MQTT takeover: the holding node did not answer in 3 s; going on');
  };

  // ---- retained ----
  mqtt.retained.onSet = (topic, msg, qos) => cluster.broadcast('mqtt.retained', { topic, qos, m: encodeMessage(msg).toString('base64') } satisfies Retained);
  cluster.on<Retained>('mqtt.retained', (r) => {
    const msg = decodeMessage(Buffer.from(r.m, 'base64'));
    if (msg) mqtt.retained.apply(r.topic, msg, r.qos);
  });

  // ---- wills of a node that dies ----
  const wills = cluster.nodeRecords('mqtt-wills', async (node, records) => {
    const online = new Set((await ctx.presence.sessions()).filter((s) => s.protocol.startsWith('mqtt')).map((s) => s.device));
    let published = 0;
    for (const [clientId, value] of records) {
      if (online.has(clientId) || value.length < 4) continue;
      const msg = decodeMessage(value.subarray(4));
      if (!msg || msg.target.kind !== 'topic') continue;
      const topic = msg.target.topic;
      // The delay counts from when the node was last seen (about one TTL ago).
      const wait = Math.max(0, value.readUInt32BE(0) * 1000 - ctx.config.presenceTtlSeconds * 1000);
      const publish = async (): Promise<void> => {
        if (stopped || mqtt.clients.has(clientId)) return;
        if (!(await willStillAllowed(ctx.broker, topic))) return;
        if (msg.retain) mqtt.retained.set(topic, msg, msg.qos, publishProperties(msg, undefined, Date.now())).catch(logRejection(log, 'retaining the will of a client of a node that died', { clientId }));
        ctx.broker.publishTopic(msg);
      };
      const publishSafely = (): void => {
        publish().catch((err: unknown) => log.warn({ err, clientId }, 'could not publish the will of a client of a node that died'));
      };
      if (wait > 0) setTimeout(publishSafely, wait).unref();
      else publishSafely();
      published++;
    }
    log.info({ node, wills: published }, 'published the wills of MQTT clients of a node that died');
  });

  const holdWill = (clientId: string, will: CoreMessage, delaySeconds: number): object => {
    const encoded = encodeMessage(will);
    const value = Buffer.allocUnsafe(4 + encoded.length);
    value.writeUInt32BE(Math.min(delaySeconds, 0xffffffff), 0);
    encoded.copy(value, 4);
    wills.set(clientId, value);
    return value;
  };

  const dropWill = (clientId: string, handle: object): void => {
    // A newer connection with the same id may have put its own will there since.
    if (wills.get(clientId) === handle) wills.delete(clientId);
  };

  // ---- persistent sessions held anywhere ----
  const pull = (clientIds: readonly string[]): void => {
    for (const id of clientIds) mqtt.clients.get(id)?.pullStored();
  };
  const durable = new DurableSessions(ctx, mqtt, cluster, pull);
  ctx.broker.setDurableTap((msg) => (msg.target.kind === 'topic' ? durable.store(msg) : undefined));
  cluster.on<string[]>('mqtt.wake', (ids) => void (Array.isArray(ids) && pull(ids)));
  // Wake-ups lost on the bus: the store says which connected sessions have rows never sent.
  const catchUp = async (): Promise<void> => {
    const kept = [...mqtt.clients].filter(([, c]) => c.sessionKept).map(([id]) => id);
    if (kept.length > 0) pull(await ctx.store.mqttQueuesWaiting(kept));
  };
  cluster.onReconnect(catchUp);

  // ---- stored sessions of fenced incarnations ----
  cluster.onHeartbeat(async (live) => {
    liveOwners = live;
    await mqtt.sessions.adopt([...live]);
    await catchUp();
  });
  // Fenced: the sessions this node held went to others; their clients connected here start again there.
  cluster.onFenced(async () => {
    for (const clientId of mqtt.sessions.forgetAll()) mqtt.clients.get(clientId)?.takenOver();
  });

  mqtt.cluster = { takeover, holdWill, dropWill };
}
