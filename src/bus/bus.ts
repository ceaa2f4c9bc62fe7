/**
 * The bus: how Herald nodes pass messages to each other. Channels are plain
 * names (`t:a/b`, `u:42`); a node subscribes to exact channels and to
 * patterns where `*` stands for any run of characters (Redis' glob; literal
 * parts go through `globEscape`).
 *
 * Contract (test/helpers/bus-suite.ts runs it on every implementation):
 * - a node never receives what it published itself;
 * - a message reaches each node at most once, however many of its
 *   subscriptions match, and messages from one node arrive in the order sent;
 * - publishing never throws: while the bus is down, messages for other nodes
 *   are dropped and counted (local delivery does not depend on the bus).
 *
 * Every message travels in a small frame: origin, sequence number and send
 * time (for the lag metric), then the payload. The origin names the node's
 * incarnation (its name and a random tag drawn at start): a node restarted
 * under the same name counts from 0 again, and must not be taken for an old
 * sender repeating itself.
 */
import { randomBytes } from 'node:crypto';

export type BusHandler = (channel: string, payload: Buffer) => void;

export interface Bus {
  readonly nodeId: string;
  /** Whether messages currently reach other nodes. */
  readonly connected: boolean;
  /** Receives every message for this node's subscriptions. */
  setHandler(handler: BusHandler): void;
  publish(channel: string, payload: Buffer): void;
  /**
   * Subscribes; resolves once the bus has confirmed it, so that anything
   * published after that reaches this node (never rejects: while the bus
   * is down it resolves when the subscription is made on reconnect).
   */
  subscribe(channel: string): Promise<void>;
  unsubscribe(channel: string): void;
  psubscribe(pattern: string): Promise<void>;
  punsubscribe(pattern: string): void;
  /** Messages dropped because the bus was down. */
  readonly dropped: number;
  close(): Promise<void>;
}

/** Escapes Redis glob specials so a topic level matches only itself. */
export function globEscape(s: string): string {
  return s.replace(/[\\*?[\]]/g, '\\$&');
}

/** Redis-style glob match for the patterns Herald makes (`*`, `?`, `\` escapes; `[` taken literally only when escaped). */
export function globMatch(pattern: string, s: string): boolean {
  let p = 0;
  let i = 0;
  let starP = -1;
  let starI = 0;
  while (i < s.length) {
    const c = pattern[p];
    if (c === '*') {
      starP = p++;
      starI = i;
      continue;
    }
    if (c === '\\' && pattern[p + 1] === s[i]) {
      p += 2;
      i++;
      continue;
    }
    if (c !== undefined && c !== '\\' && (c === '?' || c === s[i])) {
      p++;
      i++;
      continue;
    }
    if (starP < 0) return false;
    p = starP + 1;
    i = ++starI;
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

/** The origin of this process's frames: the node's name and a tag of this incarnation. */
export function incarnationOrigin(nodeId: string): string {
  return `${nodeId}/${randomBytes(6).toString('hex')}`;
}

/** Frames a payload: [origin length u8][origin][seq f64][sent-at f64][payload]. */
export function frame(origin: Buffer, seq: number, sentAt: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + origin.length + 16 + payload.length);
  out[0] = origin.length;
  origin.copy(out, 1);
  let o = 1 + origin.length;
  out.writeDoubleBE(seq, o);
  out.writeDoubleBE(sentAt, o + 8);
  o += 16;
  payload.copy(out, o);
  return out;
}

/**
 * The receiving half shared by bus implementations: drops own messages and
 * duplicates (several matching subscriptions), reports lag, and hands the
 * payload on.
 */
export class Inbox {
  private readonly lastSeq = new Map<string, number>();
  handler: BusHandler | undefined;

  constructor(
    /** This node's own origin (incarnationOrigin), whose frames it drops. */
    private readonly origin: string,
    private readonly onLag: ((ms: number) => void) | undefined,
  ) {}

  receive(channel: string, data: Buffer): void {
    if (data.length < 17) return;
    const n = data[0]!;
    if (data.length < 1 + n + 16) return;
    const origin = data.toString('latin1', 1, 1 + n);
    if (origin === this.origin) return;
    const seq = data.readDoubleBE(1 + n);
    const last = this.lastSeq.get(origin);
    if (last !== undefined && seq <= last) return;
    this.lastSeq.set(origin, seq);
    if (this.lastSeq.size > 10_000) this.lastSeq.clear(); // bounded; a reset can only let a duplicate through
    this.onLag?.(Date.now() - data.readDoubleBE(1 + n + 8));
    this.handler?.(channel, data.subarray(1 + n + 16));
  }
}

/** In-process hub: several MemoryBus nodes in one process (tests, and the single-node default). */
export class MemoryHub {
  readonly nodes = new Set<MemoryBus>();
  up = true;
}

export class MemoryBus implements Bus {
  private readonly inbox: Inbox;
  private readonly origin: Buffer;
  private seq = 0;
  private readonly channels = new Set<string>();
  private readonly patterns = new Set<string>();
  dropped = 0;

  constructor(
    readonly nodeId: string,
    private readonly hub: MemoryHub = new MemoryHub(),
    onLag?: (ms: number) => void,
  ) {
    const origin = incarnationOrigin(nodeId);
    this.inbox = new Inbox(origin, onLag);
    this.origin = Buffer.from(origin, 'latin1');
    hub.nodes.add(this);
  }

  get connected(): boolean {
    return this.hub.up;
  }

  setHandler(handler: BusHandler): void {
    this.inbox.handler = handler;
  }

  publish(channel: string, payload: Buffer): void {
    if (!this.hub.up) {
      this.dropped++;
      return;
    }
    const data = frame(this.origin, ++this.seq, Date.now(), payload);
    for (const node of this.hub.nodes) {
      // As Redis does: one copy per matching subscription; the inbox keeps the first.
      if (node.channels.has(channel)) node.inbox.receive(channel, data);
      for (const p of node.patterns) if (globMatch(p, channel)) node.inbox.receive(channel, data);
    }
  }

  async subscribe(channel: string): Promise<void> {
    this.channels.add(channel);
  }
  unsubscribe(channel: string): void {
    this.channels.delete(channel);
  }
  async psubscribe(pattern: string): Promise<void> {
    this.patterns.add(pattern);
  }
  punsubscribe(pattern: string): void {
    this.patterns.delete(pattern);
  }

  async close(): Promise<void> {
    this.hub.nodes.delete(this);
  }
}
