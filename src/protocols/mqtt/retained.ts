/**
 * Retained messages (as mosquitto's retain.c): the last message kept per
 * topic, in memory for matching new subscriptions and in the store for
 * restarts. In cluster mode, cluster.ts passes each one set here to the
 * other nodes, which `apply` it to their copy.
 */
import type { IPublishPacket, QoS } from 'mqtt-packet';
import type { HeraldContext } from '../../context.js';
import { createMessage, type CoreMessage } from '../../core/message.js';
import { mqttHeaders, payloadFormatOf } from './properties.js';

interface Retained {
  msg: CoreMessage;
  qos: QoS;
  /** Kept in memory only ($SYS statistics). */
  volatile?: boolean;
}

/** A retained message as the console sees it. */
export interface RetainedEntry {
  topic: string;
  msg: CoreMessage;
  qos: number;
  volatile: boolean;
}

const entry = (r: Retained): RetainedEntry => ({ topic: (r.msg.target as { topic: string }).topic, msg: r.msg, qos: r.qos, volatile: r.volatile === true });

/** One level of the retained-topic tree. */
interface Level {
  children: Map<string, Level>;
  retained: Retained | undefined;
}

const newLevel = (): Level => ({ children: new Map(), retained: undefined });

/**
 * Retained messages in a tree by topic level, so a new subscription's filter
 * walks only the branches it matches instead of testing every retained
 * topic (with 20,000 retained topics a SUBSCRIBE of 1,000 filters cost an
 * outside test 9 s of CPU). Their total size is bounded
 * (`mqttRetainedMaxBytes`): past it, a new retained message is refused.
 */
export class RetainedMessages {
  private readonly root = newLevel();
  private bytes = 0;
  /** Told of every retained message set on this node (cluster mode passes it on). */
  onSet: ((topic: string, msg: CoreMessage, qos: QoS) => void) | undefined;

  constructor(
    private readonly ctx: Pick<HeraldContext, 'store' | 'clock'>,
    /** Largest total of retained bodies in bytes (0: no limit). */
    private readonly maxBytes = 0,
  ) {}

  async load(): Promise<void> {
    for (const r of await this.ctx.store.listRetained()) {
      const props = JSON.parse(r.properties) as IPublishPacket['properties'];
      this.put(r.topic, {
        qos: r.qos as QoS,
        msg: createMessage({ target: { kind: 'topic', topic: r.topic }, body: r.body, contentType: props?.contentType, ...payloadFormatOf(props), headers: mqttHeaders(props), timestamp: r.updatedAt }),
      });
    }
  }

  /** Why `msg` may not be retained on `topic` now (the total would pass mqttRetainedMaxBytes), or undefined. */
  refusal(topic: string, msg: CoreMessage): string | undefined {
    if (this.maxBytes === 0 || msg.body.length === 0) return undefined;
    const replaced = this.find(topic)?.msg.body.length ?? 0;
    const total = this.bytes - replaced + msg.body.length;
    return total > this.maxBytes ? `retained messages would take ${total} bytes; the limit is ${this.maxBytes} (mqttRetainedMaxBytes)` : undefined;
  }

  /** Stores (durably) or, with an empty payload, clears the topic's retained message. */
  async set(topic: string, msg: CoreMessage, qos: QoS, properties: IPublishPacket['properties']): Promise<void> {
    this.apply(topic, msg, qos);
    await this.ctx.store.setRetained({ topic, body: msg.body, qos, properties: JSON.stringify(properties ?? {}), updatedAt: this.ctx.clock.now() });
    this.onSet?.(topic, msg, qos);
  }

  /** Sets or clears the in-memory copy only (another node stored it). */
  apply(topic: string, msg: CoreMessage, qos: QoS): void {
    if (msg.body.length === 0) this.remove(topic);
    else this.put(topic, { msg, qos });
  }

  /** Kept in memory only (server statistics that are rebuilt after a restart anyway). */
  setVolatile(topic: string, msg: CoreMessage): void {
    this.put(topic, { msg, qos: 0, volatile: true });
  }

  /** The console's view: the retained messages `filter` matches, with their topics. */
  *browse(filter: string): Iterable<RetainedEntry> {
    for (const r of this.matching(filter)) yield entry(r);
  }

  /** The retained message of one topic, if any. */
  get(topic: string): RetainedEntry | undefined {
    const r = this.find(topic);
    return r && entry(r);
  }

  /** Clears a topic's retained message, in the store and (through onSet) on every node, as an empty retained publish does. */
  clear(topic: string): Promise<void> {
    return this.set(topic, createMessage({ target: { kind: 'topic', topic }, body: Buffer.alloc(0), qos: 0 }), 0, undefined);
  }

  /** Retained messages whose topic `filter` matches (`$` topics only for filters that name them). */
  *matching(filter: string): Iterable<Retained> {
    yield* this.walk(this.root, filter.split('/'), 0);
  }

  private *walk(level: Level, f: string[], i: number): Iterable<Retained> {
    if (i === f.length) {
      if (level.retained) yield level.retained;
      return;
    }
    const part = f[i]!;
    const top = i === 0;
    if (part === '#') {
      // `a/#` matches `a` itself and everything below it.
      if (level.retained && !top) yield level.retained;
      yield* this.everything(level, top);
      return;
    }
    if (part === '+') {
      for (const [name, child] of level.children) if (!(top && name.startsWith('$'))) yield* this.walk(child, f, i + 1);
      return;
    }
    const child = level.children.get(part);
    if (child) yield* this.walk(child, f, i + 1);
  }

  private *everything(level: Level, top: boolean): Iterable<Retained> {
    for (const [name, child] of level.children) {
      if (top && name.startsWith('$')) continue;
      if (child.retained) yield child.retained;
      yield* this.everything(child, false);
    }
  }

  private find(topic: string): Retained | undefined {
    let level: Level | undefined = this.root;
    for (const part of topic.split('/')) if (!(level = level.children.get(part))) return undefined;
    return level.retained;
  }

  private put(topic: string, r: Retained): void {
    let level = this.root;
    for (const part of topic.split('/')) {
      let next = level.children.get(part);
      if (!next) level.children.set(part, (next = newLevel()));
      level = next;
    }
    this.bytes += r.msg.body.length - (level.retained?.msg.body.length ?? 0);
    level.retained = r;
  }

  private remove(topic: string): void {
    const path: [Level, string][] = [];
    let level: Level | undefined = this.root;
    for (const part of topic.split('/')) {
      const next: Level | undefined = level.children.get(part);
      if (!next) return;
      path.push([level, part]);
      level = next;
    }
    this.bytes -= level.retained?.msg.body.length ?? 0;
    level.retained = undefined;
    // Prune the branch back up while it holds nothing.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, part] = path[i]!;
      const node = parent.children.get(part)!;
      if (node.retained || node.children.size > 0) break;
      parent.children.delete(part);
    }
  }
}
