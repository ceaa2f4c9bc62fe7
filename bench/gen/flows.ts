/**
 * Publishers and subscribers of one generator process for the throughput
 * scenarios (p2p, fan-in): every publisher keeps at most `window` messages
 * in flight (sent, not yet received by its subscriber), so a run measures
 * what the server delivers, not how long a queue grows. A publisher whose
 * subscriber lives in another generator process learns of deliveries from
 * that process's periodic counts (relayed by the coordinator).
 *
 * All sends of one event-loop turn to one connection go out in one write.
 */
import { openConn, type Conn, type Protocol, type Topic } from './clients.js';
import { bodyTemplate, decode, decoded, stamp } from './payload.js';
import { LatencySample, Tally } from './tally.js';
import type { Endpoint } from '../lib/target.js';

export interface FlowSpec {
  protocol: Protocol;
  endpoint: Endpoint;
  idPrefix: string;
  body: number;
  window: number;
  /** Publisher ids run from 0 to pubCount - 1 over all processes. */
  pubCount: number;
  subscribers: { index: number; topic: Topic }[];
  publishers: { pub: number; index: number; topic: Topic }[];
  /** Send this process's delivery counts to the coordinator (some of our subscribers' publishers live elsewhere). */
  reportAcks: boolean;
}

export interface FlowCounts {
  sent: number;
  unique: number;
  duplicates: number;
  cpuSeconds: number;
}

export interface FlowFinal {
  sentByPub: number[];
  uniqueByPub: number[];
  duplicates: number;
  reordered: number;
  malformed: number;
  latenciesUs: Float64Array;
  closed: string[];
}

interface Pub {
  pub: number;
  conn: Conn;
  seq: number;
  blocked: boolean;
  encoder: ReturnType<Conn['encoder']>;
}

async function inLanes<T>(items: T[], lanes: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(lanes, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) await fn(items[i]!);
    }),
  );
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export class FlowEngine {
  private readonly tally = new Tally();
  private readonly latency = new LatencySample();
  private readonly localAcked: Float64Array;
  private readonly remote = new Map<number, Float64Array>();
  private readonly remoteAcked: Float64Array;
  private readonly isLocalPub: Uint8Array;
  private readonly subs: Conn[] = [];
  private readonly pubs: Pub[] = [];
  private readonly closed: string[] = [];
  private running = false;
  private scheduled = false;
  private sent = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private lastReported = -1;

  constructor(
    private readonly spec: FlowSpec,
    private readonly send: (msg: unknown) => void,
  ) {
    this.localAcked = new Float64Array(spec.pubCount);
    this.remoteAcked = new Float64Array(spec.pubCount);
    this.isLocalPub = new Uint8Array(spec.pubCount);
    for (const p of spec.publishers) this.isLocalPub[p.pub] = 1;
  }

  private open(index: number): Promise<Conn> {
    return openConn({ endpoint: this.spec.endpoint, protocol: this.spec.protocol, index, idPrefix: this.spec.idPrefix });
  }

  private watch(c: Conn, role: string): void {
    c.onClose = (why) => {
      if (this.closed.length < 20) this.closed.push(`${role}: ${why}`);
      else this.closed.push('…');
    };
  }

  async connectSubscribers(): Promise<void> {
    const body = this.spec.body;
    await inLanes(this.spec.subscribers, 16, async (s) => {
      const c = await this.open(s.index);
      this.watch(c, 'subscriber');
      c.onPayload = (buf, at, length) => {
        if (!decode(buf, at, length, body)) {
          this.tally.malformed++;
          return;
        }
        const pub = decoded.pub;
        if (pub >= this.spec.pubCount || !this.tally.add(pub, decoded.seq)) return;
        this.localAcked[pub]!++;
        this.latency.add(nowUs() - decoded.timeUs);
        if (this.isLocalPub[pub]) this.schedule();
      };
      await c.subscribe(s.topic);
      this.subs.push(c);
    });
  }

  async connectPublishers(): Promise<void> {
    const template = bodyTemplate(this.spec.body);
    await inLanes(this.spec.publishers, 16, async (p) => {
      const conn = await this.open(p.index);
      this.watch(conn, 'publisher');
      this.pubs.push({ pub: p.pub, conn, seq: 0, blocked: false, encoder: conn.encoder(p.topic, template) });
    });
  }

  start(): void {
    this.running = true;
    if (this.spec.reportAcks) this.ackTimer = setInterval(() => this.reportAcks(), 2);
    this.schedule();
  }

  /** Counts from another process: its subscribers' deliveries per publisher. */
  remoteAcks(from: number, counts: Float64Array): void {
    this.remote.set(from, counts);
    this.remoteAcked.fill(0);
    for (const c of this.remote.values()) for (let i = 0; i < c.length && i < this.remoteAcked.length; i++) this.remoteAcked[i]! += c[i]!;
    this.schedule();
  }

  private reportAcks(): void {
    if (this.tally.unique === this.lastReported) return;
    this.lastReported = this.tally.unique;
    this.send({ t: 'acks', counts: this.localAcked.slice() });
  }

  private schedule(): void {
    if (this.scheduled || !this.running) return;
    this.scheduled = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.scheduled = false;
    if (!this.running) return;
    const window = this.spec.window;
    const t = nowUs();
    for (const p of this.pubs) {
      if (p.blocked || p.conn.closed) continue;
      const n = window - (p.seq - this.localAcked[p.pub]! - this.remoteAcked[p.pub]!);
      if (n <= 0) continue;
      const size = p.encoder.bytes;
      const buf = Buffer.allocUnsafe(n * size);
      for (let i = 0, at = 0; i < n; i++, at += size) {
        const bodyAt = p.encoder.place(buf, at);
        stamp(buf, bodyAt, p.pub, p.seq++, t);
        p.encoder.seal(buf, at);
      }
      this.sent += n;
      if (!p.conn.write(buf)) {
        p.blocked = true;
        p.conn.socket.once('drain', () => {
          p.blocked = false;
          this.schedule();
        });
      }
    }
  }

  /** Starts or stops keeping latencies (only the measured interval's count). */
  record(on: boolean): void {
    this.latency.recording = on;
  }

  counts(): FlowCounts {
    const u = process.cpuUsage();
    return { sent: this.sent, unique: this.tally.unique, duplicates: this.tally.duplicates, cpuSeconds: (u.user + u.system) / 1e6 };
  }

  /** Stops publishing; returns what each local publisher sent. */
  stop(): { pub: number; sent: number }[] {
    this.running = false;
    this.latency.recording = false;
    if (this.ackTimer) clearInterval(this.ackTimer);
    return this.pubs.map((p) => ({ pub: p.pub, sent: p.seq }));
  }

  final(): FlowFinal {
    const sentByPub = new Array<number>(this.spec.pubCount).fill(0);
    for (const p of this.pubs) sentByPub[p.pub] = p.seq;
    const uniqueByPub = new Array<number>(this.spec.pubCount).fill(0);
    this.tally.uniqueByPub.forEach((n, i) => (uniqueByPub[i] = n));
    return {
      sentByPub,
      uniqueByPub,
      duplicates: this.tally.duplicates,
      reordered: this.tally.reordered,
      malformed: this.tally.malformed,
      latenciesUs: this.latency.take(),
      closed: this.closed,
    };
  }

  close(): void {
    this.running = false;
    if (this.ackTimer) clearInterval(this.ackTimer);
    for (const c of this.subs) c.close();
    for (const p of this.pubs) p.conn.close();
  }
}
