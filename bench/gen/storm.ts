/**
 * One generator process's share of the connection scenario: open `count`
 * connections, each a whole login (TCP, WebSocket handshake for STOMP,
 * CONNECT with a token or password, CONNECTED / CONNACK awaited), with at
 * most `concurrency` under way at once, as fast as the server completes
 * them; spread over several loopback source addresses so no address runs
 * out of ephemeral ports. Then hold them, idle, and tell which closed.
 */
import { openConn, type Conn, type Protocol } from './clients.js';
import type { Endpoint } from '../lib/target.js';

export interface StormSpec {
  protocol: Protocol;
  endpoint: Endpoint;
  idPrefix: string;
  /** Client numbers firstIndex … firstIndex + count - 1. */
  firstIndex: number;
  count: number;
  concurrency: number;
  addresses: string[];
  /**
   * Source ports this process may bind, on every address. Binding an
   * explicit port is O(1) in the kernel; bind() with port 0 and a source
   * address searches for a free port and cost 1.1 ms of system time per
   * connect here with a few thousand connections open.
   */
  ports: [lo: number, hi: number];
}

export interface StormResult {
  opened: number;
  failed: number;
  errors: string[];
  /** CLOCK_MONOTONIC µs, comparable between processes. */
  startUs: number;
  endUs: number;
  /** Connects that took longer than a second (a SYN retransmit, a full backlog …). */
  slow: number;
  connectP50Ms: number;
  connectP99Ms: number;
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export class Storm {
  private readonly conns: Conn[] = [];
  private closedDuringHold = 0;
  private readonly closeReasons = new Map<string, number>();

  constructor(private readonly spec: StormSpec) {}

  async run(): Promise<StormResult> {
    const s = this.spec;
    const errors = new Map<string, number>();
    const durations = new Float64Array(s.count);
    let opened = 0;
    let failed = 0;
    let slow = 0;
    let next = 0;
    // Each address's ports, from a random point of this process's range (ports a past run left in
    // TIME_WAIT or that someone else holds answer EADDRINUSE, and the next one is tried).
    const [lo, hi] = s.ports;
    const span = hi - lo + 1;
    const cursor = s.addresses.map(() => Math.floor(Math.random() * span));
    const portFor = (a: number): number => {
      const c = cursor[a]!;
      cursor[a] = c + 1;
      return lo + (c % span);
    };
    const startUs = nowUs();
    const lane = async (): Promise<void> => {
      for (let i = next++; i < s.count; i = next++) {
        const index = s.firstIndex + i;
        const t0 = nowUs();
        const a = index % s.addresses.length;
        try {
          let c: Conn | undefined;
          for (let attempt = 0; !c; attempt++) {
            try {
              c = await openConn({
                endpoint: s.endpoint,
                protocol: s.protocol,
                index,
                idPrefix: s.idPrefix,
                localAddress: s.addresses[a],
                localPort: portFor(a),
                timeoutMs: 30_000,
              });
            } catch (err) {
              if (!/EADDRINUSE/.test((err as Error).message) || attempt >= 2000) throw err;
            }
          }
          c.onClose = (why) => {
            this.closedDuringHold++;
            const key = why.slice(0, 120);
            this.closeReasons.set(key, (this.closeReasons.get(key) ?? 0) + 1);
          };
          this.conns.push(c);
          opened++;
        } catch (err) {
          failed++;
          const key = (err as Error).message.slice(0, 160);
          errors.set(key, (errors.get(key) ?? 0) + 1);
        }
        const d = nowUs() - t0;
        durations[i] = d;
        if (d > 1_000_000) slow++;
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(s.concurrency, s.count)) }, lane));
    const endUs = nowUs();
    durations.sort();
    const q = (p: number): number => (durations.length ? durations[Math.min(durations.length - 1, Math.floor(durations.length * p))]! / 1000 : NaN);
    return {
      opened,
      failed,
      errors: [...errors].map(([m, n]) => `${n} × ${m}`).slice(0, 5),
      startUs,
      endUs,
      slow,
      connectP50Ms: q(0.5),
      connectP99Ms: q(0.99),
    };
  }

  held(): { alive: number; closed: number; reasons: string[] } {
    return {
      alive: this.conns.filter((c) => !c.closed).length,
      closed: this.closedDuringHold,
      reasons: [...this.closeReasons].map(([m, n]) => `${n} × ${m}`).slice(0, 5),
    };
  }

  release(): void {
    for (const c of this.conns) {
      c.onClose = () => undefined;
      c.reset();
    }
    this.conns.length = 0;
  }
}
