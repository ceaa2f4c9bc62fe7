/**
 * Cluster mode: several Herald nodes, one Redis, one PostgreSQL, acting as
 * one server. This module is the node's link to the others:
 *
 * - Bus routing (ClusterLink): topic messages travel on `t:{topic}`; a node
 *   subscribes to the channels and patterns of the filters its own clients
 *   hold, so a message only reaches nodes that have a subscriber for it.
 *   User mailboxes travel on `u:{userId}`, queue pokes on `q:{name}`.
 * - Presence in Redis: a heartbeat key per node with a TTL and a hash of its
 *   sessions with the same TTL, so a dead node vanishes within the TTL.
 * - Sweeps: claims of queue messages and MQTT sessions held by dead nodes
 *   are freed and adopted.
 * - Control (`ctl`, to all nodes; `n:{id}`, to one): token revocations,
 *   thread and user changes, retained MQTT messages, shared-subscription
 *   membership, MQTT client-id takeover.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Counter } from 'prom-client';
import type { ThreadService } from '../apps/threads.js';
import type { Auth, CredentialChange, SharedFailureCounter } from '../core/auth.js';
import type { Broker, ClusterLink } from '../core/broker.js';
import type { CoreMessage } from '../core/message.js';
import type { Metrics } from '../core/metrics.js';
import { presenceEntry, type NodeInfo, type Presence, type PresenceEntry } from '../core/presence.js';
import type { Session, SessionRegistry } from '../core/session.js';
import type { Logger } from '../log.js';
import type { MqttShared } from '../protocols/mqtt/index.js';
import { publishProperties } from '../protocols/mqtt/sessions.js';
import type { QoS } from 'mqtt-packet';
import type { Store } from '../store/store.js';
import { globEscape } from './bus.js';
import { decodeMessage, encodeMessage } from './codec.js';
import { RedisBus } from './redis-bus.js';

export interface ClusterOptions {
  redisUrl: string;
  name: string;
  nodeId: string;
  ttlMs: number;
  startedAt: number;
  log: Logger;
  metrics: Metrics;
  /** Failed password logins allowed per name+address pair within the window (the name alone is slowed past it), cluster-wide. */
  loginLimit: number;
  /** Failed token presentations per address in the window (tokenFailuresPerAddress). */
  tokenFailureLimit: number;
  loginWindowMs: number;
}

type Control =
  | { t: 'cred'; change: CredentialChange }
  | { t: 'thread'; topic: string }
  | { t: 'retained'; topic: string; qos: QoS; m: string }
  | { t: 'share'; key: string }
  | { t: 'takeover'; cid: string; uid: string; from: string; req: string; holder: string | null }
  | { t: 'released'; req: string }
  | { t: 'kick'; session: string; message: string }
  | { t: 'stats?'; req: string; from: string }
  | { t: 'stats'; req: string; s: Record<string, [number, number]> };

/** Channels and patterns a topic filter needs: `a/+/c` → pattern `t:a/*​/c`; `a/#` → `t:a` and `t:a/*`. */
export function filterChannels(filter: string): { exact: string[]; patterns: string[] } {
  if (!filter.includes('+') && !filter.includes('#')) return { exact: ['t:' + filter], patterns: [] };
  const levels = filter.split('/');
  const multi = levels[levels.length - 1] === '#';
  const fixed = multi ? levels.slice(0, -1) : levels;
  if (fixed.length === 0) return { exact: [], patterns: ['t:*'] };
  const wild = fixed.includes('+');
  const base = fixed.map((l) => (l === '+' ? '*' : globEscape(l))).join('/');
  if (!multi) return { exact: [], patterns: ['t:' + base] };
  return wild ? { exact: [], patterns: ['t:' + base, 't:' + base + '/*'] } : { exact: ['t:' + fixed.join('/')], patterns: ['t:' + base + '/*'] };
}

/** FNV-1a, for spreading shared-subscription messages over nodes. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export function defaultNodeId(name: string): string {
  return name || `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

interface Parts {
  store: Store;
  broker: Broker;
  auth: Auth;
  sessions: SessionRegistry;
  threads: ThreadService;
}

/** How long a listing waits for other nodes' live session figures. */
const STATS_WAIT_MS = 500;

/** A dead node's wills wait this long for a live node to publish them; refreshed by each heartbeat. */
const WILL_KEY_TTL_MS = 24 * 3600 * 1000;

export class Cluster implements ClusterLink, Presence {
  readonly nodeId: string;
  readonly bus: RedisBus;
  private readonly redis: Redis;
  private readonly k: string;
  private readonly use = new Map<string, number>();
  /** Nodes that hold members of a shared group, by `group\0filter`, as last read. */
  private readonly shareNodes = new Map<string, string[]>();
  private live = new Set<string>();
  private parts: Parts | undefined;
  private mqtt: MqttShared | undefined;
  private readonly waiting = new Map<string, () => void>();
  private readonly statsWaiting = new Map<string, (stats: Record<string, [number, number]>) => void>();
  private timer: NodeJS.Timeout | undefined;
  private heartbeatRunning = false;
  private stopped = false;
  /** Wills of this node's connected MQTT clients, as kept in Redis (rewritten after a reconnect). */
  private readonly wills = new Map<string, Buffer>();
  /** herald_bus_messages_total children, bound once. */
  private readonly counted: Record<'messageIn' | 'messageOut' | 'queueIn' | 'queueOut' | 'controlIn' | 'controlOut', { inc(): void }>;

  constructor(private readonly options: ClusterOptions) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(options.name)) throw new Error(`clusterName must be 1–64 letters, digits, - or _ (got ${JSON.stringify(options.name)})`);
    this.nodeId = options.nodeId;
    this.k = options.name + ':';
    const m = options.metrics.busMessages;
    this.counted = {
      messageIn: m.labels('in', 'message'),
      messageOut: m.labels('out', 'message'),
      queueIn: m.labels('in', 'queue'),
      queueOut: m.labels('out', 'queue'),
      controlIn: m.labels('in', 'control'),
      controlOut: m.labels('out', 'control'),
    };
    this.bus = new RedisBus({
      url: options.redisUrl,
      prefix: options.name,
      nodeId: options.nodeId,
      log: options.log,
      onLag: (ms) => options.metrics.busLag.observe(Math.max(0, ms) / 1000),
    });
    this.redis = this.bus.commands;
    const bus = this.bus;
    let counted = 0;
    new Counter({
      name: 'herald_bus_dropped_total',
      help: 'Cluster mode: messages for other nodes dropped because Redis was unreachable',
      registers: [options.metrics.registry],
      collect() {
        // The bus counts; the metric catches up at each scrape.
        this.inc(bus.dropped - counted);
        counted = bus.dropped;
      },
    });
    this.bus.setHandler((channel, payload) => this.receive(channel, payload));
    this.bus.subscribe('ctl');
    this.bus.subscribe('n:' + this.nodeId);
    this.live.add(this.nodeId);
  }

  /** Whether Redis answers (for /readyz). */
  get connected(): boolean {
    return this.bus.connected;
  }

  /** Wires the node's parts in and starts heartbeats and sweeps. */
  start(parts: Parts): void {
    this.parts = parts;
    parts.broker.setClusterLink(this);
    parts.auth.onCredentialChange = (change) => this.control({ t: 'cred', change });
    const { loginLimit, tokenFailureLimit } = this.options;
    parts.auth.useSharedFailureCounters(this.failureCounter('name', loginLimit), this.failureCounter('pair', loginLimit), this.failureCounter('token', tokenFailureLimit));
    parts.threads.onChange = (topic) => this.control({ t: 'thread', topic });
    parts.threads.rememberMisses = false;
    parts.sessions.observe({
      added: (s) => this.sessionAdded(s),
      removed: (s) => void this.redis.hdel(this.k + 'sess:' + this.nodeId, s.id).catch(() => undefined),
    });
    this.redis.on('ready', () => void this.resyncPresence());
    if (this.redis.status === 'ready') void this.resyncPresence();
    const every = Math.max(500, Math.floor(this.options.ttlMs / 3));
    this.timer = setInterval(() => void this.heartbeat(), every);
    this.timer.unref();
    void this.heartbeat();
  }

  /** MQTT joins after its front end is up: retained messages and client-id takeover. */
  attachMqtt(mqtt: MqttShared): void {
    this.mqtt = mqtt;
    mqtt.cluster = {
      takeover: (cid, uid) => this.takeover(cid, uid),
      holdWill: (cid, will, delay) => this.holdWill(cid, will, delay),
      dropWill: (cid, handle) => this.dropWill(cid, handle),
    };
    mqtt.retained.onSet = (topic, msg, qos) => this.control({ t: 'retained', topic, qos, m: encodeMessage(msg).toString('base64') });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    // Leave presence at once rather than after the TTL.
    // Its clients are gone and their wills settled here: nothing for the others to publish.
    await Promise.all([
      this.redis.del(this.k + 'node:' + this.nodeId, this.k + 'sess:' + this.nodeId, this.k + 'wills:' + this.nodeId),
      this.redis.srem(this.k + 'nodes', this.nodeId),
      this.redis.srem(this.k + 'willnodes', this.nodeId),
    ]).catch(() => undefined);
    await this.bus.close();
  }

  // ---- ClusterLink -------------------------------------------------------------------

  private ref(channel: string, pattern: boolean, on: boolean): void {
    const key = (pattern ? 'p' : 'c') + channel;
    const n = (this.use.get(key) ?? 0) + (on ? 1 : -1);
    if (n > 0) this.use.set(key, n);
    else this.use.delete(key);
    if (on && n === 1) pattern ? this.bus.psubscribe(channel) : this.bus.subscribe(channel);
    if (!on && n === 0) pattern ? this.bus.punsubscribe(channel) : this.bus.unsubscribe(channel);
  }

  interest(kind: 'topic' | 'user' | 'queue', key: string, on: boolean): void {
    if (kind === 'topic') {
      const { exact, patterns } = filterChannels(key);
      for (const c of exact) this.ref(c, false, on);
      for (const p of patterns) this.ref(p, true, on);
    } else {
      this.ref((kind === 'user' ? 'u:' : 'q:') + key, false, on);
    }
  }

  forward(msg: CoreMessage): void {
    const t = msg.target;
    const channel = t.kind === 'topic' ? 't:' + t.topic : t.kind === 'user' ? 'u:' + t.userId : undefined;
    if (channel === undefined) return;
    this.bus.publish(channel, encodeMessage(msg));
    this.counted.messageOut.inc();
  }

  pokeQueue(name: string): void {
    this.bus.publish('q:' + name, EMPTY);
    this.counted.queueOut.inc();
  }

  sharedInterest(group: string, filter: string, on: boolean): void {
    const key = `${group}\u0000${filter}`;
    const set = this.k + 'share:' + key;
    const done = on ? this.redis.sadd(set, this.nodeId) : this.redis.srem(set, this.nodeId);
    void done.then(
      () => this.control({ t: 'share', key }),
      () => undefined,
    );
    if (on) {
      this.shareNodes.set(key, [this.nodeId]);
      void this.refreshShare(key);
    } else {
      this.shareNodes.delete(key);
    }
  }

  sharedPick(group: string, filter: string, msg: CoreMessage): boolean {
    const nodes = this.shareNodes.get(`${group}\u0000${filter}`)?.filter((n) => this.live.has(n));
    if (!nodes || nodes.length === 0 || !nodes.includes(this.nodeId)) return true; // not known yet: better twice than never
    return nodes[hash(msg.id) % nodes.length] === this.nodeId;
  }

  private async refreshShare(key: string): Promise<void> {
    try {
      const members = (await this.redis.smembers(this.k + 'share:' + key)).sort();
      if (this.shareNodes.has(key)) this.shareNodes.set(key, members);
    } catch {
      // Redis away: keep the last view.
    }
  }

  // ---- receiving -------------------------------------------------------------------------

  private receive(channel: string, payload: Buffer): void {
    const parts = this.parts;
    if (!parts) return;
    const kind = channel.charCodeAt(0);
    if ((kind === 0x74 /* t */ || kind === 0x75) /* u */ && channel.charCodeAt(1) === 0x3a) {
      this.counted.messageIn.inc();
      const msg = decodeMessage(payload);
      if (msg) parts.broker.receiveRemote(msg);
      else this.options.log.warn({ channel }, 'dropped a malformed message from the bus');
      return;
    }
    if (channel.startsWith('q:')) {
      this.counted.queueIn.inc();
      parts.broker.queuePoked(channel.slice(2));
      return;
    }
    this.counted.controlIn.inc();
    let c: Control;
    try {
      c = JSON.parse(payload.toString('utf8')) as Control;
    } catch {
      this.options.log.warn({ channel }, 'dropped a malformed control message from the bus');
      return;
    }
    void this.onControl(c).catch((err: unknown) => this.options.log.error({ err, control: c.t }, 'cluster control message failed'));
  }

  private async onControl(c: Control): Promise<void> {
    const parts = this.parts!;
    switch (c.t) {
      case 'cred':
        parts.auth.applyRemoteChange(c.change);
        return;
      case 'thread':
        parts.threads.forget(c.topic);
        return;
      case 'retained': {
        const msg = decodeMessage(Buffer.from(c.m, 'base64'));
        if (msg) this.mqtt?.retained.apply(c.topic, msg, c.qos);
        return;
      }
      case 'share':
        if (this.shareNodes.has(c.key)) await this.refreshShare(c.key);
        return;
      case 'takeover': {
        const mqtt = this.mqtt;
        if (!mqtt) return;
        const conn = mqtt.clients.get(c.cid);
        // A client id belongs to its user: another user's connection elsewhere does not end this one.
        if (conn && conn.principal.userId !== c.uid) {
          this.options.log.info({ clientId: c.cid, node: c.from }, 'MQTT takeover by another user ignored');
        } else if (conn) {
          conn.takenOver();
          if (mqtt.clients.get(c.cid) === conn) mqtt.clients.delete(c.cid);
        }
        if (mqtt.sessions.holds(c.cid)) await mqtt.sessions.release(c.cid);
        if (c.holder === this.nodeId) this.direct(c.from, { t: 'released', req: c.req });
        return;
      }
      case 'released':
        this.waiting.get(c.req)?.();
        return;
      case 'kick':
        parts.sessions.get(c.session)?.close({ code: 'kicked', message: c.message });
        return;
      case 'stats?': {
        const s: Record<string, [number, number]> = {};
        for (const session of parts.sessions.all()) {
          const f = session.stats();
          s[session.id] = [f.subscriptions, f.unacked];
        }
        this.direct(c.from, { t: 'stats', req: c.req, s });
        return;
      }
      case 'stats':
        this.statsWaiting.get(c.req)?.(c.s);
        return;
    }
  }

  /**
   * Live figures (subscriptions, unacknowledged messages) of the sessions of
   * other nodes, asked for on the bus; what has not answered within `waitMs`
   * is left out (its sessions are listed without figures).
   */
  private async remoteStats(nodes: string[], waitMs: number): Promise<Map<string, [number, number]>> {
    const out = new Map<string, [number, number]>();
    if (nodes.length === 0) return out;
    const req = randomBytes(8).toString('hex');
    let left = nodes.length;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, waitMs);
      this.statsWaiting.set(req, (s) => {
        for (const [id, f] of Object.entries(s)) out.set(id, f);
        if (--left === 0) (clearTimeout(t), resolve());
      });
      for (const node of nodes) this.direct(node, { t: 'stats?', req, from: this.nodeId });
    });
    this.statsWaiting.delete(req);
    return out;
  }

  /** Ends a session on another node (the console's "disconnect"). */
  kick(node: string, session: string, message: string): void {
    this.direct(node, { t: 'kick', session, message });
  }

  private control(c: Control): void {
    this.bus.publish('ctl', Buffer.from(JSON.stringify(c)));
    this.counted.controlOut.inc();
  }

  private direct(node: string, c: Control): void {
    this.bus.publish('n:' + node, Buffer.from(JSON.stringify(c)));
    this.counted.controlOut.inc();
  }

  /**
   * Before a node accepts an MQTT client id: every other node ends its
   * connection with that id, and the node holding its stored session lets
   * go of it (its last writes on disk). Waits for that holder, up to 3 s.
   * Only connections of the same user (`userId`) are ended.
   */
  async takeover(clientId: string, userId: string): Promise<void> {
    const record = await this.parts!.store.getMqttSession(clientId).catch(() => null);
    const holder = record?.node;
    const req = randomBytes(8).toString('hex');
    const mustWait = holder !== null && holder !== undefined && holder !== this.nodeId && this.live.has(holder);
    const released = mustWait
      ? new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            this.options.log.warn({ clientId, holder }, 'MQTT takeover: the holding node did not answer in 3 s; going on');
            resolve();
          }, 3000);
          this.waiting.set(req, () => {
            clearTimeout(t);
            resolve();
          });
        })
      : Promise.resolve();
    this.control({ t: 'takeover', cid: clientId, uid: userId, from: this.nodeId, req, holder: holder ?? null });
    await released;
    this.waiting.delete(req);
  }

  // ---- wills of clients on a node that dies ----------------------------------------------------

  /**
   * A connected client's will, kept in `{cluster}:wills:{node}` as
   * [u32 delay seconds][encoded message]. The node settles it itself when
   * the connection ends; only if the node dies does another publish it.
   */
  private holdWill(clientId: string, will: CoreMessage, delaySeconds: number): object {
    const encoded = encodeMessage(will);
    const value = Buffer.allocUnsafe(4 + encoded.length);
    value.writeUInt32BE(Math.min(delaySeconds, 0xffffffff), 0);
    encoded.copy(value, 4);
    this.wills.set(clientId, value);
    const key = this.k + 'wills:' + this.nodeId;
    void this.redis
      .multi()
      .hset(key, clientId, value)
      .pexpire(key, WILL_KEY_TTL_MS)
      .sadd(this.k + 'willnodes', this.nodeId)
      .exec()
      .catch(() => undefined); // rewritten with the rest after a reconnect
    return value;
  }

  private dropWill(clientId: string, handle: object): void {
    // A newer connection with the same id may have put its own will there since.
    if (this.wills.get(clientId) !== handle) return;
    this.wills.delete(clientId);
    void this.redis.hdel(this.k + 'wills:' + this.nodeId, clientId).catch(() => undefined);
  }

  /** After (re)connecting to Redis: this node's wills as they are now. */
  private async resyncWills(): Promise<void> {
    const key = this.k + 'wills:' + this.nodeId;
    const multi = this.redis.multi().del(key);
    if (this.wills.size > 0) {
      for (const [cid, value] of this.wills) multi.hset(key, cid, value);
      multi.pexpire(key, WILL_KEY_TTL_MS).sadd(this.k + 'willnodes', this.nodeId);
    }
    await multi.exec().catch(() => undefined);
  }

  /**
   * Publishes the wills held by nodes that are no longer alive. One live node
   * wins each dead node's wills (RENAME is atomic); a will whose client is
   * connected again somewhere is dropped, and a will delay counts from when
   * the node was last seen (about one TTL ago).
   */
  private async reapWills(live: Set<string>): Promise<void> {
    const mqtt = this.mqtt;
    const parts = this.parts;
    if (!mqtt || !parts) return;
    for (const node of await this.redis.smembers(this.k + 'willnodes')) {
      if (live.has(node)) continue;
      const mine = this.k + 'wills-reaping:' + node + ':' + this.nodeId;
      try {
        await this.redis.rename(this.k + 'wills:' + node, mine);
      } catch {
        // Taken by another node, or there were none left.
        await this.redis.srem(this.k + 'willnodes', node);
        continue;
      }
      const wills = await this.redis.hgetallBuffer(mine);
      await this.redis.multi().del(mine).srem(this.k + 'willnodes', node).exec();
      const online = new Set((await this.sessions()).filter((s) => s.protocol.startsWith('mqtt')).map((s) => s.device));
      let published = 0;
      for (const [clientId, value] of Object.entries(wills)) {
        if (online.has(clientId) || value.length < 4) continue;
        const msg = decodeMessage(value.subarray(4));
        if (!msg || msg.target.kind !== 'topic') continue;
        const topic = msg.target.topic;
        const wait = Math.max(0, value.readUInt32BE(0) * 1000 - this.options.ttlMs);
        const publish = (): void => {
          if (this.stopped || mqtt.clients.has(clientId)) return;
          if (msg.retain) void mqtt.retained.set(topic, msg, msg.qos, publishProperties(msg, undefined, Date.now()));
          parts.broker.publishTopic(msg);
        };
        if (wait > 0) setTimeout(publish, wait).unref();
        else publish();
        published++;
      }
      this.options.log.info({ node, wills: published }, 'published the wills of MQTT clients of a node that died');
    }
  }

  // ---- presence -----------------------------------------------------------------------------

  private sessionAdded(s: Session): void {
    void this.redis.hset(this.k + 'sess:' + this.nodeId, s.id, JSON.stringify(presenceEntry(s, this.nodeId))).catch(() => undefined);
  }

  /** After (re)connecting to Redis: write this node's whole session list again. */
  private async resyncPresence(): Promise<void> {
    const parts = this.parts;
    if (!parts || this.stopped) return;
    const key = this.k + 'sess:' + this.nodeId;
    const multi = this.redis.multi().del(key);
    for (const s of parts.sessions.all()) multi.hset(key, s.id, JSON.stringify(presenceEntry(s, this.nodeId)));
    multi.pexpire(key, this.options.ttlMs);
    await multi.exec().catch(() => undefined);
    await this.resyncWills();
    // Subscriptions to shared groups re-announce themselves too.
    for (const key of this.shareNodes.keys()) await this.redis.sadd(this.k + 'share:' + key, this.nodeId).catch(() => undefined);
    // Seen alive again: the heartbeat also lets local queue consumers take messages again.
    await this.heartbeat();
  }

  /** Refreshes this node's TTLs, reads who is alive, frees what dead nodes held. */
  private async heartbeat(): Promise<void> {
    const parts = this.parts;
    if (!parts || this.stopped || this.heartbeatRunning || this.redis.status !== 'ready') return;
    this.heartbeatRunning = true;
    try {
      const ttl = this.options.ttlMs;
      const info: NodeInfo = { id: this.nodeId, startedAt: this.options.startedAt, connections: parts.sessions.size, seenAt: Date.now() };
      await this.redis
        .multi()
        .set(this.k + 'node:' + this.nodeId, JSON.stringify(info), 'PX', ttl)
        .sadd(this.k + 'nodes', this.nodeId)
        .pexpire(this.k + 'sess:' + this.nodeId, ttl)
        .exec();
      const nodes = await this.nodes();
      const live = new Set(nodes.map((n) => n.id));
      live.add(this.nodeId);
      this.live = live;
      this.options.metrics.clusterNodes.set(live.size);
      const liveList = [...live];
      for (const queue of await parts.store.releaseDeadClaims(liveList)) {
        this.pokeQueue(queue);
        parts.broker.queuePoked(queue);
      }
      if (this.mqtt) await this.mqtt.sessions.adopt(liveList);
      if (this.wills.size > 0) await this.redis.pexpire(this.k + 'wills:' + this.nodeId, WILL_KEY_TTL_MS);
      await this.reapWills(live);
      // Also a safety net for a missed poke: local consumers look at their queues once per beat.
      parts.broker.recheckQueues();
      for (const key of this.shareNodes.keys()) await this.refreshShare(key);
    } catch (err) {
      this.options.log.warn({ err }, 'cluster heartbeat failed; trying again');
    } finally {
      this.heartbeatRunning = false;
    }
  }

  async nodes(): Promise<NodeInfo[]> {
    const ids = await this.redis.smembers(this.k + 'nodes');
    if (ids.length === 0) return [];
    const values = await this.redis.mget(ids.map((id) => this.k + 'node:' + id));
    const out: NodeInfo[] = [];
    const dead: string[] = [];
    ids.forEach((id, i) => {
      const v = values[i];
      if (v) out.push(JSON.parse(v) as NodeInfo);
      else dead.push(id);
    });
    if (dead.length > 0) await this.redis.srem(this.k + 'nodes', ...dead);
    return out.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async sessions(opts: { stats?: boolean } = {}): Promise<PresenceEntry[]> {
    const out: PresenceEntry[] = [];
    // This node's own sessions: live, with their figures (even before its first heartbeat).
    if (this.parts) for (const s of this.parts.sessions.all()) out.push({ ...presenceEntry(s, this.nodeId), ...s.stats() });
    try {
      const others = (await this.nodes()).map((n) => n.id).filter((id) => id !== this.nodeId);
      // Figures are asked for while the lists are read: one bus round trip, not one per node.
      const figures = opts.stats ? this.remoteStats(others, STATS_WAIT_MS) : undefined;
      const remote: PresenceEntry[] = [];
      for (const id of others) {
        const all = await this.redis.hgetall(this.k + 'sess:' + id);
        for (const v of Object.values(all)) remote.push(JSON.parse(v) as PresenceEntry);
      }
      const live = await figures;
      for (const e of remote) {
        const f = live?.get(e.sessionId);
        out.push(f ? { ...e, subscriptions: f[0], unacked: f[1] } : e);
      }
    } catch (err) {
      // Redis away: this node's sessions are all it can vouch for (and all a broadcast can reach now).
      this.options.log.warn({ err: (err as Error).message }, 'presence of other nodes unavailable; listing this node only');
    }
    return out.sort((a, b) => a.connectedAt - b.connectedAt);
  }

  async onlineUsers(): Promise<string[]> {
    return [...new Set((await this.sessions()).map((s) => s.userId))];
  }

  // ---- shared limits ----------------------------------------------------------------------------

  /** Failed logins counted in Redis: INCR with the window set on the first failure. */
  private failureCounter(scope: string, limit: number): SharedFailureCounter {
    const windowMs = this.options.loginWindowMs;
    const key = (k: string) => `${this.k}fail:${scope}:${k}`;
    return {
      blockedFor: async (k) => {
        const [count, ttl] = await Promise.all([this.redis.get(key(k)), this.redis.pttl(key(k))]);
        return count !== null && Number(count) >= limit && ttl > 0 ? ttl : 0;
      },
      hit: async (k) => {
        await this.redis.multi().incr(key(k)).pexpire(key(k), windowMs, 'NX').exec();
      },
      reset: async (k) => {
        await this.redis.del(key(k));
      },
    };
  }
}

const EMPTY = Buffer.alloc(0);
