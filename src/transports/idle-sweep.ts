/**
 * One timer for many connections' idle checks (MQTT keep-alive), as
 * mosquitto and aedes do, instead of a timer per connection: a timer is an
 * object, a closure and its context held for the connection's whole life,
 * and arming it was part of every connect. Every `everyMs` the sweep asks
 * each watched item whether it is still alive; an item that answers false
 * (it timed out and was closed, or closed meanwhile) is dropped. The timer
 * runs only while something is watched, and never keeps the process up.
 *
 * An idle limit is found within `everyMs` of passing: the check is
 * `now - lastRead > limit`, so a silent client is cut between its limit and
 * its limit plus `everyMs`.
 */
export class IdleSweep<T> {
  private readonly items = new Set<T>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** Answers whether `item` is still to be watched (false: it is closed, or was closed just now). */
    private readonly check: (item: T, now: number) => boolean,
    /** A check that threw: the item is no longer watched, and the others are still checked. */
    private readonly onError: (err: unknown, item: T) => void,
    readonly everyMs = 1000,
  ) {}

  get size(): number {
    return this.items.size;
  }

  watch(item: T): void {
    this.items.add(item);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), this.everyMs);
      this.timer.unref();
    }
  }

  unwatch(item: T): void {
    this.items.delete(item);
    if (this.items.size === 0) this.stop();
  }

  /** One pass over every watched item (the timer's; tests may call it). */
  sweep(now = Date.now()): void {
    for (const item of this.items) {
      let alive = false;
      try {
        alive = this.check(item, now);
      } catch (err) {
        this.onError(err, item);
      }
      if (!alive) this.items.delete(item);
    }
    if (this.items.size === 0) this.stop();
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
