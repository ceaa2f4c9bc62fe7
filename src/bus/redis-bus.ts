/**
 * The bus on Redis pub/sub (ioredis): one connection publishes, one listens.
 * Channel names get the cluster's prefix (`{cluster}:`), so several clusters
 * can share one Redis. While Redis is unreachable, ioredis reconnects with
 * back-off; publishes in the meantime are dropped and counted (local
 * delivery goes on), and on reconnect every subscription is made again.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../log.js';
import { frame, Inbox, incarnationOrigin, type Bus, type BusHandler } from './bus.js';

export interface RedisBusOptions {
  url: string;
  /** Cluster name: prefix of every channel. */
  prefix: string;
  nodeId: string;
  log: Logger;
  onLag?: (ms: number) => void;
}

/** Reconnect back-off: 100 ms doubling to 5 s. */
export function redisOptions(name: string): RedisOptions {
  return {
    connectionName: name,
    enableOfflineQueue: true,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
  };
}

export class RedisBus implements Bus {
  readonly nodeId: string;
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly inbox: Inbox;
  private readonly origin: Buffer;
  private readonly prefix: string;
  private seq = 0;
  dropped = 0;
  private lastErrorLog = 0;

  constructor(private readonly options: RedisBusOptions) {
    this.nodeId = options.nodeId;
    this.prefix = options.prefix + ':';
    const origin = incarnationOrigin(options.nodeId);
    this.origin = Buffer.from(origin, 'latin1');
    this.inbox = new Inbox(origin, options.onLag);
    // The publisher never queues while Redis is away: a stale message later is worse than none.
    this.pub = new Redis(options.url, { ...redisOptions(`herald-pub-${options.nodeId}`), enableOfflineQueue: false });
    // Subscriptions made while Redis is away wait for it; on reconnect ioredis makes them all again.
    this.sub = new Redis(options.url, { ...redisOptions(`herald-sub-${options.nodeId}`), maxRetriesPerRequest: null });
    for (const [name, conn] of [['publisher', this.pub], ['subscriber', this.sub]] as const) {
      conn.on('error', (err: Error) => this.reportError(name, err));
      conn.on('ready', () => options.log.info({ connection: name }, 'connected to Redis'));
    }
    const plen = this.prefix.length;
    this.sub.on('messageBuffer', (channel: Buffer, data: Buffer) => this.inbox.receive(channel.toString('utf8', plen), data));
    this.sub.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, data: Buffer) => this.inbox.receive(channel.toString('utf8', plen), data));
  }

  private reportError(connection: string, err: Error): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) return;
    this.lastErrorLog = now;
    this.options.log.error(
      { connection, err: err.message, url: redactUrl(this.options.url) },
      'Redis unreachable; retrying with back-off (local delivery continues; /readyz fails until it is back)',
    );
  }

  /** The command connection (presence, shared limits): fails fast while Redis is away. */
  get commands(): Redis {
    return this.pub;
  }

  get connected(): boolean {
    return this.pub.status === 'ready' && this.sub.status === 'ready';
  }

  setHandler(handler: BusHandler): void {
    this.inbox.handler = handler;
  }

  publish(channel: string, payload: Buffer): void {
    if (this.pub.status !== 'ready') {
      this.dropped++;
      return;
    }
    const data = frame(this.origin, ++this.seq, Date.now(), payload);
    this.pub.publish(this.prefix + channel, data).catch(() => this.dropped++);
  }

  subscribe(channel: string): Promise<void> {
    return this.sub.subscribe(this.prefix + channel).then(
      () => undefined,
      (err: Error) => this.reportError('subscriber', err),
    );
  }
  unsubscribe(channel: string): void {
    this.sub.unsubscribe(this.prefix + channel).catch(() => undefined);
  }
  psubscribe(pattern: string): Promise<void> {
    return this.sub.psubscribe(this.prefix + pattern).then(
      () => undefined,
      (err: Error) => this.reportError('subscriber', err),
    );
  }
  punsubscribe(pattern: string): void {
    this.sub.punsubscribe(this.prefix + pattern).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.pub.disconnect();
    this.sub.disconnect();
  }
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}
