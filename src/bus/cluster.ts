/**
 * Cluster mode: several Herald nodes, one Redis, one PostgreSQL, acting as
 * one server. This module is the node's link to the others, and knows no
 * feature:
 *
 * - Bus routing (ClusterLink): topic messages travel on `t:{topic}`; a node
 *   subscribes to the channels and patterns of the filters its own clients
 *   hold, so a message only reaches nodes that have a subscriber for it.
 *   User mailboxes travel on `u:{userId}`, queue pokes on `q:{name}`.
 * - Liveness, twice: a heartbeat key per node in Redis with a TTL (who is
 *   connected, shared-group routing), and a lease per incarnation in the
 *   store (node-lease.ts), the only evidence on which work moves: the queue
 *   claims and MQTT sessions of an incarnation are freed once it is fenced,
 *   never because its Redis keys are missing (Redis may just have restarted).
 * - Control (ClusterControl): small JSON messages to all nodes (`ctl`) or
 *   one (`n:{id}`), whose types features register with `on` where they are
 *   wired; `survey` asks the others and gathers their answers. Lifecycle
 *   hooks, records that outlive a dying node (node-records.ts) and shared
 *   counters are offered the same way. Sessions per node: redis-presence.ts.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Counter } from 'prom-client';
import type { ClusterControl, ClusterLink, ControlHandler, NodeRecords, WindowCounter } from '../core/cluster-link.js';
import type { CoreMessage } from '../core/message.js';
import type { Metrics } from '../core/metrics.js';
import type { NodeInfo } from '../core/presence.js';
import type { Logger } from '../log.js';
import type { LeaseStore } from '../store/leases.js';
import { OutageLog } from '../core/background.js';
import { decodeMessage, encodeMessage } from './codec.js';
import { NodeLease } from './node-lease.js';
import { BusRoutes } from './routes.js';
import { ControlChannel } from './control.js';
import { NodeRecordSets } from './node-records.js';
import { SharedGroups } from './shared-groups.js';
import { redisWindowCounter } from './window-counter.js';
import { RedisBus } from './redis-bus.js';

export interface ClusterOptions {
  redisUrl: string;
  name: string;
  nodeId: string;
  /** This incarnation's owner id (LeaseStore.beginIncarnation). */
  owner: string;
  ttlMs: number;
  startedAt: number;
  log: Logger;
  metrics: Metrics;
}

/** What the cluster drives on this node: the broker's remote side, and the store's queue claims. */
export interface ClusterParts {
  broker: { setClusterLink(link: ClusterLink): void; receiveRemote(msg: CoreMessage): void; queuePoked(name: string): void; recheckQueues(): void; forgetClaims(): void; catchUpMailboxes(): Promise<void> };
  store: LeaseStore & { releaseDeadClaims(liveOwners: readonly string[]): Promise<string[]> };
  /** This node's connection count, for its heartbeat record. */
  connections(): number;
}

export function defaultNodeId(name: string): string {
  return name || `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

export class Cluster implements ClusterLink, ClusterControl {
  readonly nodeId: string;
  readonly bus: RedisBus;
  /** Commands to Redis (shared with redis-presence.ts and node-records.ts). */
  readonly redis: Redis;
  /** Prefix of every key of this cluster: `{clusterName}:`. */
  readonly k: string;
  private readonly routes: BusRoutes;
  private readonly shares: SharedGroups;
  private live = new Set<string>();
  private parts: ClusterParts | undefined;
  private readonly control: ControlChannel;
  private readonly beatHooks: ((live: ReadonlySet<string>) => Promise<void>)[] = [];
  private readonly redisBeatHooks: (() => Promise<void>)[] = [];
  private readonly reconnectHooks: (() => Promise<void>)[] = [];
  private readonly stopHooks: (() => Promise<void>)[] = [];
  private readonly fenceHooks: (() => Promise<void>)[] = [];
  private readonly records: NodeRecordSets;
  private lease: NodeLease | undefined;
  private timer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private heartbeatRunning = false;
  private leaseRunning = false;
  private hooksRunning = false;
  private readonly beatOutage: OutageLog;
  private readonly leaseOutage: OutageLog;
  private readonly hookOutage: OutageLog;
  private stopped = false;
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
    this.routes = new BusRoutes(this.bus);
    this.records = new NodeRecordSets(this.redis, this.k, () => this.owner, options.log);
    this.beatOutage = new OutageLog(options.log, 'the cluster heartbeat in Redis');
    this.leaseOutage = new OutageLog(options.log, 'freeing the work of fenced nodes');
    this.hookOutage = new OutageLog(options.log, 'a cluster heartbeat hook (adopting sessions, catching up)');
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
    this.control = new ControlChannel(this.bus, this.nodeId, options.log, () => this.counted.controlOut.inc());
    this.bus.setHandler((channel, payload) => this.receive(channel, payload));
    this.bus.subscribe('ctl');
    this.bus.subscribe('n:' + this.nodeId);
    this.live.add(this.nodeId);
    this.shares = new SharedGroups(this.redis, this.k, this.nodeId, () => this.live, (key) => this.broadcast('share', key));
    // The routing's own control type: a node joined or left a shared group, so the others read its members again.
    this.on<string>('share', async (key) => this.shares.changed(key));
  }

  /** Whether Redis answers (/readyz). */
  get connected(): boolean {
    return this.bus.connected;
  }

  get liveNodes(): ReadonlySet<string> {
    return this.live;
  }

  /** This incarnation's owner id: what its queue claims and MQTT sessions carry. */
  get owner(): string {
    return this.lease?.owner ?? this.options.owner;
  }

  /** Whether this node's lease is surely its own (renewed within a lease): only then does it claim. */
  get leased(): boolean {
    return this.lease?.held ?? false;
  }

  /** Wires the broker in and starts heartbeats; features register their control types before or after. */
  start(parts: ClusterParts): void {
    this.parts = parts;
    this.lease = new NodeLease(parts.store, this.nodeId, this.options.ttlMs, this.options.owner, this.options.log, async (old) => {
      parts.broker.forgetClaims();
      for (const hook of this.fenceHooks) await hook().catch((err: unknown) => this.options.log.warn({ err }, 'dropping the work of a fenced incarnation failed'));
      await this.records.rewrite().catch(() => undefined);
      this.options.log.info({ fenced: old, owner: this.owner }, 'the work of the fenced incarnation is dropped here');
    });
    parts.broker.setClusterLink(this);
    const reconnected = (): void => void this.reconnected().catch((err: unknown) => this.beatOutage.failed(err));
    this.redis.on('ready', reconnected);
    if (this.redis.status === 'ready') reconnected();
    const every = Math.max(500, Math.floor(this.options.ttlMs / 3));
    this.timer = setInterval(() => void this.heartbeat(), every);
    this.timer.unref();
    this.leaseTimer = setInterval(() => void this.leaseTick(), every);
    this.leaseTimer.unref();
    void this.heartbeat();
    void this.leaseTick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.leaseTimer);
    for (const hook of this.stopHooks) await hook().catch(() => undefined);
    // Leave at once rather than after the TTL; what this node kept for the others goes too (it settled it itself).
    await Promise.all([this.redis.del(this.k + 'node:' + this.nodeId), this.redis.srem(this.k + 'nodes', this.nodeId), this.records.leave()]).catch(() => undefined);
    await this.bus.close();
  }

  // ---- ClusterLink -------------------------------------------------------------------

  interest(kind: 'topic' | 'user' | 'queue', key: string, on: boolean): void {
    this.routes.interest(kind, key, on);
  }

  routeReady(kind: 'topic' | 'user', key: string): Promise<void> {
    return this.routes.ready(kind, key);
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
    this.shares.interest(group, filter, on);
  }

  sharedPick(group: string, filter: string, msg: CoreMessage): boolean {
    return this.shares.pick(group, filter, msg);
  }

  // ---- control -----------------------------------------------------------------------------

  on<B, A = void>(type: string, handler: ControlHandler<B, A>): void {
    this.control.on(type, handler);
  }

  broadcast(type: string, body: unknown): void {
    this.control.broadcast(type, body);
  }

  send(node: string, type: string, body: unknown): void {
    this.control.send(node, type, body);
  }

  survey<A>(type: string, body: unknown, options: { waitFor: readonly string[]; timeoutMs: number }): Promise<Map<string, A>> {
    return this.control.survey<A>(type, body, options);
  }

  /** Runs after each heartbeat in Redis (presence keeps its keys alive with it, whatever the store does). */
  onRedisBeat(hook: () => Promise<void>): void {
    this.redisBeatHooks.push(hook);
  }

  onHeartbeat(hook: (live: ReadonlySet<string>) => Promise<void>): void {
    this.beatHooks.push(hook);
  }

  onReconnect(hook: () => Promise<void>): void {
    this.reconnectHooks.push(hook);
  }

  onStop(hook: () => Promise<void>): void {
    this.stopHooks.push(hook);
  }

  onFenced(hook: () => Promise<void>): void {
    this.fenceHooks.push(hook);
  }

  nodeRecords(name: string, orphaned: (node: string, records: Map<string, Buffer>) => Promise<void>): NodeRecords {
    return this.records.open(name, orphaned);
  }

  /** INCR with the window set on the first hit (keys `{cluster}:{name}:{key}`). */
  windowCounter(name: string, limit: number, windowMs: number): WindowCounter {
    return redisWindowCounter(this.redis, `${this.k}${name}:`, limit, windowMs);
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
    this.control.receive(channel, payload);
  }

  // ---- liveness ------------------------------------------------------------------------------

  /** After (re)connecting to Redis: features rewrite what they keep there, then a heartbeat. */
  private async reconnected(): Promise<void> {
    if (!this.parts || this.stopped) return;
    // Registered again first: no node judges the others by what a fresh Redis lacks (leases are in the store anyway).
    await this.heartbeat();
    for (const hook of this.reconnectHooks) await hook().catch((err: unknown) => this.options.log.warn({ err }, 'cluster resync after reconnecting failed'));
    await this.records.rewrite();
    await this.shares.rewrite();
    // Pokes, wake-ups and user messages may have been lost while Redis was away: look at the store again,
    // now and once more when the listening connection surely has its subscriptions back.
    const parts = this.parts;
    const catchUp = (): void => {
      parts.broker.recheckQueues();
      parts.broker.catchUpMailboxes().catch((err: unknown) => this.leaseOutage.failed(err));
    };
    catchUp();
    setTimeout(() => !this.stopped && catchUp(), CATCH_UP_AGAIN_MS).unref();
  }

  /** Refreshes this node's heartbeat key in Redis and reads which nodes are connected (routing, presence). */
  private async heartbeat(): Promise<void> {
    const parts = this.parts;
    if (!parts || this.stopped || this.heartbeatRunning || this.redis.status !== 'ready') return;
    this.heartbeatRunning = true;
    try {
      const info: NodeInfo = { id: this.nodeId, startedAt: this.options.startedAt, connections: parts.connections(), seenAt: Date.now() };
      await this.redis
        .multi()
        .set(this.k + 'node:' + this.nodeId, JSON.stringify(info), 'PX', this.options.ttlMs)
        .sadd(this.k + 'nodes', this.nodeId)
        .exec();
      const nodes = await this.nodes();
      const live = new Set(nodes.map((n) => n.id));
      live.add(this.nodeId);
      this.live = live;
      this.options.metrics.clusterNodes.set(live.size);
      await this.shares.refreshAll();
      for (const hook of this.redisBeatHooks) await hook();
      this.beatOutage.ok();
    } catch (err) {
      this.beatOutage.failed(err);
    } finally {
      this.heartbeatRunning = false;
    }
  }

  /**
   * Renews the lease in the store; frees what fenced incarnations held
   * (queue claims, MQTT sessions through the heartbeat hooks, records left
   * in Redis); and, as a safety net for lost pokes, lets local queue
   * consumers look at the store again.
   */
  private async leaseTick(): Promise<void> {
    const parts = this.parts;
    const lease = this.lease;
    if (!parts || !lease || this.stopped || this.leaseRunning) return;
    this.leaseRunning = true;
    try {
      const live = await lease.tick();
      if (live && !this.stopped) {
        for (const queue of await parts.store.releaseDeadClaims(live)) {
          this.pokeQueue(queue);
          parts.broker.queuePoked(queue);
        }
        // Adopting sessions and wills may take long: never in the way of the next renewal.
        void this.afterRenewal(new Set(live));
        this.leaseOutage.ok();
      }
      parts.broker.recheckQueues();
    } catch (err) {
      this.leaseOutage.failed(err);
    } finally {
      this.leaseRunning = false;
    }
  }

  /** Work that follows a renewal (features' hooks, wills of fenced nodes), one run at a time. */
  private async afterRenewal(owners: ReadonlySet<string>): Promise<void> {
    const parts = this.parts;
    if (this.hooksRunning || !parts) return;
    this.hooksRunning = true;
    try {
      for (const hook of this.beatHooks) await hook(owners).catch((err: unknown) => this.hookOutage.failed(err));
      if (this.redis.status === 'ready') await this.records.beat(async () => new Set(await parts.store.liveOwners()));
    } catch (err) {
      this.hookOutage.failed(err);
    } finally {
      this.hooksRunning = false;
    }
  }

  /** Live nodes, from their heartbeat keys (the ids of expired ones are cleared away). */
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
}

const EMPTY = Buffer.alloc(0);
/** After Redis comes back, the store is read again this much later too (ioredis resubscribes on its own time). */
const CATCH_UP_AGAIN_MS = 2000;
