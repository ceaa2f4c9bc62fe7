/**
 * The lame-duck drain a load balancer can follow (SIGTERM):
 *
 * 1. `draining` turns true at once, so `/readyz` answers 503, while
 *    everything keeps serving (new connections too) for `drainReadySeconds`:
 *    the load balancer has that long to take the node out.
 * 2. New connections are refused (TCP listeners closed, WebSocket upgrades
 *    answered 503), and the sessions still here are ended in paced batches
 *    spread evenly over `drainSeconds`, each told why in its protocol
 *    (`Session.close` with the code `shutdown`), so the other nodes (or this
 *    one, restarted) do not get every client back in the same second.
 *
 * What comes after (HTTP closed, queues handed back, MQTT sessions flushed,
 * the store closed) is the server's; both windows at 0 give the fast
 * shutdown: everyone is told at once.
 */
import type { CloseReason, Session } from './core/session.js';
import type { Logger } from './log.js';

/** The words every protocol passes on (STOMP ERROR `message`, MQTT 5 reason string, JSON `message`). */
export const SHUTDOWN_MESSAGE = 'server shutting down';

/** The part of the session registry the drain needs. */
export interface DrainSessions {
  readonly size: number;
  all(): IterableIterator<Session>;
}

export interface DrainParts {
  sessions: DrainSessions;
  /** Stops taking connections: TCP listeners close, WebSocket upgrades are refused (503). */
  stopAccepting(): void;
  log: Logger;
}

export interface DrainWindows {
  /** How long `/readyz` answers 503 while everything keeps serving. */
  readySeconds: number;
  /** How long the disconnects are spread over. */
  seconds: number;
}

export type DrainPhase = 'serving' | 'unready' | 'disconnecting' | 'drained';

/**
 * Time between two batches for a window of `windowMs`: about 20 batches,
 * none closer than 100 ms nor further apart than 250 ms.
 */
export function batchInterval(windowMs: number): number {
  return Math.min(250, Math.max(100, Math.floor(windowMs / 20)));
}

export class Drainer {
  private phase: DrainPhase = 'serving';
  private running: Promise<void> | undefined;
  private hurried = false;
  private wake: (() => void) | undefined;
  private readonly told = new WeakSet<Session>();
  private closed = 0;

  constructor(
    private readonly parts: DrainParts,
    private readonly windows: DrainWindows,
    /** Where each client's `reconnectAfterMs` comes from: [0, 1). */
    private readonly random: () => number = Math.random,
  ) {}

  /** True from the moment the drain begins (what `/readyz` reads). */
  get draining(): boolean {
    return this.phase !== 'serving';
  }

  get state(): DrainPhase {
    return this.phase;
  }

  /** Runs the drain; later calls get the same promise. Resolves once every session was told and the window is over. */
  run(): Promise<void> {
    this.running ??= this.drain();
    return this.running;
  }

  /** Cuts the drain short: the waits end now and every session left is told at once. */
  hurry(): void {
    this.hurried = true;
    this.wake?.();
  }

  private async drain(): Promise<void> {
    const { log, sessions } = this.parts;
    const readyMs = this.windows.readySeconds * 1000;
    const windowMs = this.windows.seconds * 1000;
    this.phase = 'unready';
    if (readyMs > 0) {
      log.info({ sessions: sessions.size, drainReadySeconds: this.windows.readySeconds }, `draining: /readyz answers 503; still serving for ${this.windows.readySeconds} s`);
      await this.sleepUntil(Date.now() + readyMs);
    }

    this.phase = 'disconnecting';
    this.parts.stopAccepting();
    const startedAt = Date.now();
    const interval = batchInterval(windowMs);
    // The last batch goes out one interval before the end, so it too has time to read its goodbye.
    const batches = Math.max(1, Math.floor(windowMs / interval));
    if (windowMs > 0) {
      log.info({ sessions: sessions.size, drainSeconds: this.windows.seconds, batches }, `draining: refusing new connections; disconnecting ${sessions.size} sessions over ${this.windows.seconds} s`);
    }
    for (let k = 0; k < batches && !this.hurried; k++) {
      if (k > 0) await this.sleepUntil(startedAt + k * interval);
      if (this.hurried) break;
      const left = this.untold();
      // An even share of what is left for each batch to come: sessions that arrive late (a handshake under
      // way when the listeners closed) are spread with the rest.
      this.tell(left.slice(0, Math.ceil(left.length / (batches - k))), windowMs);
    }
    await this.sleepUntil(startedAt + windowMs);
    this.tell(this.untold(), windowMs);
    this.phase = 'drained';
    if (windowMs > 0 || readyMs > 0) log.info({ closed: this.closed, ms: Date.now() - startedAt, hurried: this.hurried }, 'drained: every client was told');
  }

  /** Sessions not told yet, oldest first. */
  private untold(): Session[] {
    const left: Session[] = [];
    for (const s of this.parts.sessions.all()) if (!this.told.has(s)) left.push(s);
    return left;
  }

  private tell(batch: readonly Session[], windowMs: number): void {
    // Each client is asked to wait a different time before it comes back, spread over the window
    // (at least a second), so even those told in the same batch do not return together.
    const spread = Math.max(windowMs, 1000);
    for (const s of batch) {
      this.told.add(s);
      this.closed++;
      const reason: CloseReason = { code: 'shutdown', message: SHUTDOWN_MESSAGE, reconnectAfterMs: Math.round(this.random() * spread) };
      try {
        s.close(reason);
      } catch (err) {
        this.parts.log.warn({ err, session: s.id }, 'could not tell a session the server is shutting down');
      }
    }
    if (batch.length > 0) this.parts.log.debug({ sessions: batch.length, left: this.parts.sessions.size }, 'drain batch');
  }

  /** Waits until `at` (epoch ms), or less if the drain is hurried. */
  private sleepUntil(at: number): Promise<void> {
    const ms = at - Date.now();
    if (ms <= 0 || this.hurried) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}
