/**
 * One generator process's share of the durable-send scenario: `clients`
 * keep-alive HTTP connections, each sending POST /api/message/sendMessage
 * to one offline user after another, the next request when the answer to
 * the last arrived (so at most `clients` sends are in flight). Every answer
 * is parsed: a send counts as acknowledged only on HTTP 200 with
 * `code: 200` and a message id in the JSON.
 */
import { Agent } from 'node:http';
import { agentClient, rawClient, type HttpClient } from './http-client.js';
import { bodyTemplate, stamp } from './payload.js';
import { LatencySample } from './tally.js';

export interface SendSpec {
  port: number;
  token: string;
  receivers: string[];
  clients: number;
  body: number;
  client: 'raw' | 'agent';
  /** This process's number, written into each message as its publisher id. */
  pub: number;
}

export interface SendCounts {
  acked: number;
  errors: number;
  cpuSeconds: number;
}

export interface SendFinal {
  acked: number;
  errors: number;
  errorSamples: string[];
  latenciesUs: Float64Array;
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export class Sender {
  private acked = 0;
  private errors = 0;
  private readonly errorSamples = new Map<string, number>();
  private readonly latency = new LatencySample(200_000);
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly clients: HttpClient[] = [];
  private seq = 0;

  constructor(private readonly spec: SendSpec) {
    const agent = new Agent({ keepAlive: true, maxSockets: spec.clients });
    for (let i = 0; i < spec.clients; i++) this.clients.push(spec.client === 'agent' ? agentClient(spec.port, agent) : rawClient(spec.port));
  }

  start(): void {
    this.running = true;
    this.loops = this.clients.map((c, i) => this.loop(c, i));
  }

  record(on: boolean): void {
    this.latency.recording = on;
  }

  private async loop(client: HttpClient, lane: number): Promise<void> {
    const s = this.spec;
    const content = bodyTemplate(s.body);
    const headers = { 'content-type': 'application/json', 'x-auth-token': s.token };
    let n = lane;
    while (this.running) {
      const receiver = s.receivers[n++ % s.receivers.length]!;
      const t0 = nowUs();
      stamp(content, 0, s.pub, this.seq++, t0);
      const body = Buffer.from(`{"content":"${content.toString('latin1')}","receiver":["${receiver}"],"title":"bench","type":0}`);
      try {
        const r = await client.post('/api/message/sendMessage', headers, body);
        let ok = false;
        let why = `HTTP ${r.status}`;
        try {
          const json = JSON.parse(r.body.toString('utf8')) as { code?: number; message?: string; data?: { id?: string } };
          ok = r.status === 200 && json.code === 200 && typeof json.data?.id === 'string';
          if (!ok) why = `HTTP ${r.status} ${json.message ?? ''}`;
        } catch {
          why = `HTTP ${r.status} with a body that is not JSON`;
        }
        if (ok) {
          this.acked++;
          this.latency.add(nowUs() - t0);
        } else this.error(why);
      } catch (err) {
        this.error((err as Error).message);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  private error(why: string): void {
    this.errors++;
    const k = why.slice(0, 160);
    this.errorSamples.set(k, (this.errorSamples.get(k) ?? 0) + 1);
  }

  counts(): SendCounts {
    const u = process.cpuUsage();
    return { acked: this.acked, errors: this.errors, cpuSeconds: (u.user + u.system) / 1e6 };
  }

  async stop(): Promise<SendFinal> {
    this.running = false;
    this.latency.recording = false;
    await Promise.all(this.loops);
    for (const c of this.clients) c.close();
    return {
      acked: this.acked,
      errors: this.errors,
      errorSamples: [...this.errorSamples].map(([m, n]) => `${n} × ${m}`).slice(0, 5),
      latenciesUs: this.latency.take(),
    };
  }
}
