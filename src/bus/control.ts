/**
 * The cluster's control channel: small JSON messages between nodes, on
 * `ctl` (every node) or `n:{node}` (one), whose types the features register
 * where they are wired (ClusterControl.on); a survey asks every node and
 * gathers the answers of those it waits for.
 */
import { randomBytes } from 'node:crypto';
import type { ControlHandler } from '../core/cluster-link.js';
import type { Logger } from '../log.js';
import type { Bus } from './bus.js';

/** A control message: type, sender, survey request id (asked or answered), body. */
interface Envelope {
  t: string;
  f: string;
  r?: string;
  b?: unknown;
}

/** The type of a survey's answer (features' types never start with `@`). */
const ANSWER = '@answer';

export class ControlChannel {
  private readonly handlers = new Map<string, ControlHandler<unknown, unknown>>();
  /** Surveys waiting for answers, by request id. */
  private readonly surveys = new Map<string, (from: string, answer: unknown) => void>();

  constructor(
    private readonly bus: Bus,
    private readonly nodeId: string,
    private readonly log: Logger,
    private readonly sent: () => void,
  ) {}

  on<B, A = void>(type: string, handler: ControlHandler<B, A>): void {
    if (this.handlers.has(type)) throw new Error(`cluster control type ${type} is registered twice`);
    this.handlers.set(type, handler as ControlHandler<unknown, unknown>);
  }

  broadcast(type: string, body: unknown): void {
    this.publish('ctl', { t: type, f: this.nodeId, b: body });
  }

  send(node: string, type: string, body: unknown): void {
    this.publish('n:' + node, { t: type, f: this.nodeId, b: body });
  }

  async survey<A>(type: string, body: unknown, options: { waitFor: readonly string[]; timeoutMs: number }): Promise<Map<string, A>> {
    const answers = new Map<string, A>();
    const req = randomBytes(8).toString('hex');
    const waiting = new Set(options.waitFor.filter((n) => n !== this.nodeId));
    const done = new Promise<void>((resolve) => {
      if (waiting.size === 0) return resolve();
      const t = setTimeout(resolve, options.timeoutMs);
      this.surveys.set(req, (from, answer) => {
        if (!waiting.delete(from)) return;
        answers.set(from, answer as A);
        if (waiting.size === 0) (clearTimeout(t), resolve());
      });
    });
    this.publish('ctl', { t: type, f: this.nodeId, r: req, b: body });
    await done;
    this.surveys.delete(req);
    return answers;
  }

  /** A control message from the bus. */
  receive(channel: string, payload: Buffer): void {
    let e: Envelope;
    try {
      e = JSON.parse(payload.toString('utf8')) as Envelope;
    } catch {
      this.log.warn({ channel }, 'dropped a malformed control message from the bus');
      return;
    }
    if (e.t === ANSWER) {
      if (e.r !== undefined) this.surveys.get(e.r)?.(e.f, e.b);
      return;
    }
    const handler = this.handlers.get(e.t);
    if (!handler) {
      this.log.debug({ control: e.t }, 'control message of a type nobody handles on this node');
      return;
    }
    void (async () => {
      const answer = await handler(e.b, e.f);
      if (e.r !== undefined && answer !== undefined) this.publish('n:' + e.f, { t: ANSWER, f: this.nodeId, r: e.r, b: answer });
    })().catch((err: unknown) => this.log.error({ err, control: e.t }, 'cluster control message failed'));
  }

  private publish(channel: string, e: Envelope): void {
    this.bus.publish(channel, Buffer.from(JSON.stringify(e)));
    this.sent();
  }
}
