/**
 * Background work that must survive a store or Redis outage: a failure is
 * logged once per outage at warn (its recovery at info), the task runs again
 * at its next tick, and nothing it does can reject unhandled.
 */
import type { Logger } from '../log.js';
import { storeUnavailable } from '../store/errors.js';

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

const shared = new WeakMap<Logger, Map<string, OutageLog>>();

/**
 * The one OutageLog of `log` for `what`: for work nobody waits for that is
 * done many times (a store write per message), so an outage is logged once
 * whichever call fails first, and its end by the first call that works.
 */
export function outageLog(log: Logger, what: string): OutageLog {
  let byTask = shared.get(log);
  if (!byTask) shared.set(log, (byTask = new Map()));
  let outage = byTask.get(what);
  if (!outage) byTask.set(what, (outage = new OutageLog(log, what)));
  return outage;
}

/**
 * Runs `task` every `ms` (unref'd), never two at once; a failure goes to an
 * OutageLog. With `now`, the first run starts at once instead of after `ms`.
 * Returns the timer, for clearInterval.
 */
export function repeat(log: Logger, what: string, ms: number, task: () => Promise<unknown>, options: { now?: boolean } = {}): NodeJS.Timeout {
  const outage = new OutageLog(log, what);
  let running = false;
  const run = async (): Promise<void> => {
    if (running) return;
    running = true;
    try {
      await task();
      outage.ok();
    } catch (err) {
      outage.failed(err);
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void run(), ms);
  timer.unref();
  if (options.now) void run();
  return timer;
}

/**
 * The catch for a promise nobody waits for (`void x().catch(logRejection(…))`):
 * the store being down is logged at warn without a stack, anything else (a
 * bug) at error with it.
 */
export function logRejection(log: Logger, what: string, fields: Record<string, unknown> = {}): (err: unknown) => void {
  return (err) => {
    if (storeUnavailable(err)) log.warn({ ...fields, err: errorText(err) }, `${what} failed: the store is unavailable`);
    else log.error({ ...fields, err }, `${what} failed`);
  };
}

/** Where a rejection nobody handled is counted (herald_unhandled_rejections_total). */
export interface RejectionCounter {
  inc(): void;
}

/**
 * The process-level net for `herald serve`: a promise rejected with no
 * handler is logged at error and counted instead of ending the process.
 * Every background task handles its own failures; this only catches a bug.
 * Returns the function that removes the net.
 */
export function guardUnhandledRejections(log: Logger, counter: RejectionCounter): () => void {
  const onRejection = (reason: unknown): void => {
    counter.inc();
    log.error({ err: reason }, `unhandled rejection: ${errorText(reason)}`);
  };
  process.on('unhandledRejection', onRejection);
  return () => void process.off('unhandledRejection', onRejection);
}
