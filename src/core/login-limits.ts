/**
 * Limits on failed logins, none of which lets a stranger lock a user out:
 *
 * - a password login is blocked per (name, address) pair after
 *   `loginMaxAttempts` failures in the login window (the pair lock);
 * - a name failing from several addresses slows down (a growing delay,
 *   capped at NAME_DELAY_MAX_MS) for addresses that have not logged in as
 *   that name before (the name slow-down);
 * - failed token presentations (unknown, dead or forged tokens) have their
 *   own per-address limit, `tokenFailuresPerAddress`, and never count
 *   against password logins; a token refused lately is answered from memory
 *   and counted once.
 *
 * The counters themselves are in rate-limit.ts; in cluster mode they are
 * also kept across nodes (`useShared`).
 */
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { AuthError } from './principal.js';
import { SpreadCounter, WindowCounter } from './rate-limit.js';

/** A name failing from several addresses: the first delay, doubled per further failure, up to the cap. */
export const NAME_DELAY_FIRST_MS = 250;
export const NAME_DELAY_MAX_MS = 3000;
/** Distinct addresses a name must fail from before it is slowed down. */
const NAME_SPREAD_SOURCES = 2;
/** (name, address) pairs remembered as good (a successful login), and for how long. */
const GOOD_PAIRS_MAX = 100_000;
const GOOD_PAIR_MS = 30 * 86_400_000;
/** Token hashes recently refused, answered from memory and counted once per address limit. */
const REFUSED_MAX = 20_000;

/**
 * Failed-login counting shared by every node (cluster mode: Redis): `blockedFor`
 * is how long a key stays over the counter's limit (0 when under it).
 */
export interface SharedFailureCounter {
  blockedFor(key: string): Promise<number>;
  hit(key: string): Promise<void>;
  reset(key: string): Promise<void>;
  /** Takes back one hit (an attempt that could not be judged). */
  unhit(key: string): Promise<void>;
}

/** The key of a (name, address) pair: an address holds no "/", so the pair is unambiguous. */
function pairKey(nameKey: string, address: string): string {
  return `${address}/${nameKey}`;
}

export class LoginLimits {
  private shared: { byName: SharedFailureCounter; byPair: SharedFailureCounter; byTokenAddress: SharedFailureCounter | undefined } | undefined;
  private readonly windowMs: number;
  /** Failed password logins per (name, address): blocks the pair. */
  private readonly failuresByPair: WindowCounter;
  /** Failed password logins per name, and from how many addresses: slows the name down. */
  private readonly failuresByName: SpreadCounter;
  /** Failed token presentations per address: blocks token presentations from it. */
  private readonly tokenFailures: WindowCounter;
  /** (name, address) pairs with a successful login → when; oldest first (bounded by GOOD_PAIRS_MAX). */
  private readonly goodPairs = new Map<string, number>();
  /** Token hashes refused lately → the answer and until when it holds; oldest first. */
  private readonly refused = new Map<string, { error: AuthError; until: number }>();

  constructor(
    private readonly config: Config,
    private readonly clock: Clock,
  ) {
    const windowMs = config.loginWindowSeconds * 1000;
    this.windowMs = windowMs;
    this.failuresByPair = new WindowCounter(config.loginMaxAttempts, windowMs, clock);
    this.failuresByName = new SpreadCounter(windowMs, clock);
    this.tokenFailures = new WindowCounter(config.tokenFailuresPerAddress, windowMs, clock);
  }

  /** Counts across the cluster as well (see Auth.useSharedFailureCounters). */
  useShared(byName: SharedFailureCounter, byPair: SharedFailureCounter, byTokenAddress?: SharedFailureCounter): void {
    this.shared = { byName, byPair, byTokenAddress };
  }

  // ---- password logins ---------------------------------------------------------

  /**
   * The pair lock: refuses (rate_limited) a password attempt of `name` from
   * `address` once the pair has `loginMaxAttempts` failures in the window,
   * and otherwise counts the attempt (a success resets the count).
   */
  async admitPasswordAttempt(name: string, address: string): Promise<void> {
    const pair = pairKey(name.toLowerCase(), address);
    const locked = (wait: number): AuthError => {
      const seconds = Math.ceil(wait / 1000);
      return new AuthError('rate_limited', `too many failed logins as "${name.slice(0, 128)}" from this address; try again in ${seconds} s`, seconds);
    };
    // Checked and counted in one synchronous step, so parallel guesses cannot overrun the limit; a success resets it.
    const localWait = this.failuresByPair.blockedFor(pair);
    if (localWait > 0) throw locked(localWait);
    this.failuresByPair.hit(pair);
    if (this.shared) {
      const clusterWait = await this.shared.byPair.blockedFor(pair).catch(() => 0);
      if (clusterWait > 0) throw locked(clusterWait);
      await this.shared.byPair.hit(pair).catch(() => undefined);
    }
  }

  /**
   * The name slow-down: the delay before a password check of `name` from
   * `address`: none for an address that has logged in as this name before,
   * nor while the name's failures come from a single address (the pair lock
   * handles that); otherwise, once the name has `loginMaxAttempts` failures
   * in the window, NAME_DELAY_FIRST_MS doubled per further failure, at most
   * NAME_DELAY_MAX_MS.
   */
  async slowdownMs(name: string, address: string): Promise<number> {
    const nameKey = name.toLowerCase();
    if (this.hasGoodRecord(pairKey(nameKey, address))) return 0;
    const { count, sources } = this.failuresByName.get(nameKey);
    let over = sources >= NAME_SPREAD_SOURCES ? count - this.config.loginMaxAttempts : -1;
    if (this.shared && over < 0) {
      // The cluster knows the count, not the addresses: at its limit the name gets the first step.
      const cluster = await this.shared.byName.blockedFor(nameKey).catch(() => 0);
      if (cluster > 0) over = 0;
    }
    return over < 0 ? 0 : Math.min(NAME_DELAY_MAX_MS, NAME_DELAY_FIRST_MS * 2 ** Math.min(over, 16));
  }

  private hasGoodRecord(pair: string): boolean {
    const at = this.goodPairs.get(pair);
    if (at === undefined) return false;
    if (this.clock.now() - at < GOOD_PAIR_MS) return true;
    this.goodPairs.delete(pair);
    return false;
  }

  /** A wrong name or password: counts against the name (the pair was counted on admission). */
  async passwordFailed(name: string, address: string): Promise<void> {
    const nameKey = name.toLowerCase();
    this.failuresByName.hit(nameKey, address);
    await this.shared?.byName.hit(nameKey).catch(() => undefined);
  }

  /**
   * An attempt counted by admitPasswordAttempt that could not be judged (the
   * store did not answer): taken back, so that clients retrying through an
   * outage do not lock their own user out for the window after it.
   */
  async passwordUnchecked(name: string, address: string): Promise<void> {
    const pair = pairKey(name.toLowerCase(), address);
    this.failuresByPair.unhit(pair);
    await this.shared?.byPair.unhit(pair).catch(() => undefined);
  }

  /** A right password: the pair's count resets, and the address is remembered as good for the name. */
  async passwordSucceeded(name: string, address: string): Promise<void> {
    const pair = pairKey(name.toLowerCase(), address);
    this.failuresByPair.reset(pair);
    this.goodPairs.delete(pair);
    if (this.goodPairs.size >= GOOD_PAIRS_MAX) {
      const oldest = this.goodPairs.keys().next();
      if (!oldest.done) this.goodPairs.delete(oldest.value);
    }
    this.goodPairs.set(pair, this.clock.now());
    await this.shared?.byPair.reset(pair).catch(() => undefined);
  }

  // ---- token presentations -------------------------------------------------------

  /** How long `address` must still wait before presenting a token (0 = it may). */
  async tokenWait(address: string): Promise<number> {
    const local = this.tokenFailures.blockedFor(address);
    if (!this.shared?.byTokenAddress) return local;
    try {
      return Math.max(local, await this.shared.byTokenAddress.blockedFor(address));
    } catch {
      return local;
    }
  }

  async tokenFailed(address: string): Promise<void> {
    this.tokenFailures.hit(address);
    await this.shared?.byTokenAddress?.hit(address).catch(() => undefined);
  }

  /** The answer given lately to this token hash, while it holds (one login window). */
  refusedLately(hash: string): AuthError | undefined {
    const r = this.refused.get(hash);
    if (!r) return undefined;
    if (this.clock.now() < r.until) return r.error;
    this.refused.delete(hash);
    return undefined;
  }

  rememberRefused(hash: string, error: AuthError): void {
    if (this.refused.size >= REFUSED_MAX) {
      const oldest = this.refused.keys().next();
      if (!oldest.done) this.refused.delete(oldest.value);
    }
    this.refused.set(hash, { error, until: this.clock.now() + this.windowMs });
  }

  /** A token just issued with this hash is not a refused one. */
  forgetRefused(hash: string): void {
    this.refused.delete(hash);
  }

  /** Drops expired windows and answers (the sweep calls it). */
  prune(): void {
    const now = this.clock.now();
    this.failuresByName.prune();
    this.failuresByPair.prune();
    this.tokenFailures.prune();
    for (const [hash, r] of this.refused) {
      if (now < r.until) break; // in time order: the rest are younger
      this.refused.delete(hash);
    }
  }
}
