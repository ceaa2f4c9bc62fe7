/**
 * Background work that must survive a store or Redis outage: a failure is
 * logged once per outage at warn (its recovery at info), the task runs again
 * at its next tick, and nothing it does can reject unhandled.
 */
import type { Logger } from '../log.js';

/** A short description of a failure, for a log line without a stack. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** Logs a recurring failure once when it starts and once when it ends. */
export class OutageLog {
  private down = false;

  constructor(
    private readonly log: Logger,
    /** What fails, for the log line: "the idle-thread sweep". */
    private readonly what: string,
  ) {}

  get failing(): boolean {
    return this.down;
  }

  failed(err: unknown): void {
    if (this.down) return;
    this.down = true;
    this.log.warn({ task: this.what, err: errorText(err) }, `${this.what} failed; trying again at its next run`);
  }

  ok(): void {
    if (!this.down) return;
    this.down = false;
    this.log.info({ task: this.what }, `${this.what} works again`);
  }
}

/**
 * Runs `task` every `ms` (unref'd), never two at once; a failure goes to an
 * OutageLog. Returns the timer, for clearInterval.
 */
export function repeat(log: Logger, what: string, ms: number, task: () => Promise<unknown>): NodeJS.Timeout {
  const outage = new OutageLog(log, what);
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    task().then(
      () => outage.ok(),
      (err: unknown) => outage.failed(err),
    ).finally(() => (running = false));
  }, ms);
  timer.unref();
  return timer;
}
