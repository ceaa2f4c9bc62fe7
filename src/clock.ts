/** Time source, injectable so tests can move time without sleeping. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock tests advance by hand. */
export class ManualClock implements Clock {
  constructor(private t = 1_700_000_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

let turnTime = 0;
let turnTimeRead = false;
const turnTimeExpires = (): void => {
  turnTimeRead = false;
};

/**
 * Date.now(), read once per stretch of synchronous work: the first call
 * reads the clock, and later calls get the same value until the current
 * callback and its microtasks are over. Reading the clock costs 0.1–0.3 µs
 * on a virtual machine without a fast time source, and the publish path
 * wants a time several times per message (last read, last write, the
 * message's timestamp), where being behind by the length of one callback
 * does no harm.
 */
export function turnNow(): number {
  if (!turnTimeRead) {
    turnTime = Date.now();
    turnTimeRead = true;
    queueMicrotask(turnTimeExpires);
  }
  return turnTime;
}

/** A Clock on turnNow. */
export const turnClock: Clock = { now: turnNow };

let loopIteration = 0;
let loopIterationCounted = false;
const nextLoopIteration = (): void => {
  loopIteration++;
  loopIterationCounted = false;
};

/**
 * A number that stays the same for one event-loop iteration (everything
 * the poll phase reads, up to the check phase) and changes after it: a
 * connection compares it to tell how much it has read in this iteration.
 * Costs one setImmediate per iteration in which it is called, for all
 * callers together.
 */
export function loopTurn(): number {
  if (!loopIterationCounted) {
    loopIterationCounted = true;
    setImmediate(nextLoopIteration);
  }
  return loopIteration;
}
