/**
 * Authentication: passwords, login tokens, JWTs, and the death of tokens.
 *
 * Login tokens are 128 random bits in base64url (22 characters, safe inside a
 * URL and a STOMP destination such as `/user/{token}/queue/strm`), stored as
 * SHA-256 hashes. A login token dies after `tokenIdleSeconds` without an
 * authenticated HTTP call; each such call renews it. Socket traffic does not
 * renew a token (a socket session dies with the HTTP token it was opened with),
 * except where a protocol calls `renewPrincipal` (a chat client's SEND on
 * `/stomp`). A dead token stays in the store for EXPIRED_MEMORY_MS more, so
 * presenting it again is answered "token expired", not "invalid".
 *
 * Failed logins are limited in three ways, none of which lets a stranger lock
 * a user out: a password login is blocked per (name, address) pair after
 * `loginMaxAttempts`; a name failing from several addresses slows down (a
 * growing delay, capped at NAME_DELAY_MAX_MS) for addresses that have not
 * logged in as that name before; failed token presentations (unknown, dead or
 * forged tokens) have their own per-address limit, `tokenFailuresPerAddress`,
 * and never count against password logins.
 *
 * Sessions bound to a credential register with `watch`; when the credential
 * dies (idle expiry, JWT `exp`, an `expiring` credential's `expiresAt`,
 * logout, revocation) their callback runs with
 * the reason so the protocol can tell the client in words before closing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { importSPKI, jwtVerify, errors as joseErrors, type JWTPayload, type CryptoKey } from 'jose';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { ROLES, type Role, type Store, type TokenRecord, type UserRecord } from '../store/store.js';
import { hashPassword, verifyPassword } from './passwords.js';
import { SpreadCounter, WindowCounter } from './rate-limit.js';

export type Credential =
  | { kind: 'token'; hash: string }
  | { kind: 'jwt'; key: string; expiresAt: number | null }
  | { kind: 'password' }
  /** Checked by someone else (an app's user token, a back-end hook) and valid until `expiresAt` (ms). */
  | { kind: 'expiring'; key: string; expiresAt: number }
  | { kind: 'anonymous' };

/** Who is connected or calling: the same shape whatever the protocol. */
export interface Principal {
  userId: string;
  name: string;
  role: Role;
  credential: Credential;
}

export type AuthErrorCode = 'invalid_token' | 'token_expired' | 'bad_credentials' | 'user_disabled' | 'rate_limited';

export class AuthError extends Error {
  override name = 'AuthError';
  constructor(
    readonly code: AuthErrorCode,
    message: string,
    /** For rate_limited: seconds until the caller may try again. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

export type DeathReason = 'expired' | 'revoked';
type DeathCallback = (reason: DeathReason) => void;

interface CachedToken {
  record: TokenRecord;
  user: UserRecord;
  /** Last use we wrote to the store; writes are batched to one per touchPersistMs. */
  persistedLastUsedAt: number;
}

const TOKEN_BYTES = 16;
/** How long a dead login token is still answered "token expired" (it stays in the store that long). */
export const EXPIRED_MEMORY_MS = 3_600_000;
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
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The key of a (name, address) pair: an address holds no "/", so the pair is unambiguous. */
function pairKey(nameKey: string, address: string): string {
  return `${address}/${nameKey}`;
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** A change other nodes must apply at once (cluster mode). */
export type CredentialChange = { kind: 'tokens'; hashes: string[]; userId?: string } | { kind: 'user'; userId: string };

/**
 * Failed-login counting shared by every node (cluster mode: Redis): `blockedFor`
 * is how long a key stays over the counter's limit (0 when under it).
 */
export interface SharedFailureCounter {
  blockedFor(key: string): Promise<number>;
  hit(key: string): Promise<void>;
  reset(key: string): Promise<void>;
}

export class Auth {
  /** Told of every revocation and user change made on this node (cluster mode passes them on). */
  onCredentialChange: ((change: CredentialChange) => void) | undefined;
  /** Waits out a login slowdown (tests replace it to record the delays instead of sleeping). */
  pause: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms));
  private shared: { byName: SharedFailureCounter; byPair: SharedFailureCounter; byTokenAddress: SharedFailureCounter | undefined } | undefined;
  private readonly idleMs: number;
  /** Touches closer together than this reach the store as one write. */
  private readonly touchPersistMs: number;
  private readonly windowMs: number;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly watchers = new Map<string, { credential: Credential; userId: string; callbacks: Set<DeathCallback> }>();
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
  /** Tokens `renewPrincipal` is reading from the store (not cached here). */
  private readonly renewing = new Set<string>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private jwtKeys: { hs?: Uint8Array; rs?: CryptoKey } | undefined;

  constructor(
    private readonly store: Store,
    private readonly config: Config,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.idleMs = config.tokenIdleSeconds * 1000;
    this.touchPersistMs = Math.min(15_000, Math.floor(this.idleMs / 20));
    const windowMs = config.loginWindowSeconds * 1000;
    this.windowMs = windowMs;
    this.failuresByPair = new WindowCounter(config.loginMaxAttempts, windowMs, clock);
    this.failuresByName = new SpreadCounter(windowMs, clock);
    this.tokenFailures = new WindowCounter(config.tokenFailuresPerAddress, windowMs, clock);
  }

  /** Loads JWT keys and starts the sweep that finds dead credentials of watched sessions. */
  async start(): Promise<void> {
    const keys: { hs?: Uint8Array; rs?: CryptoKey } = {};
    if (this.config.jwtSecret) keys.hs = new TextEncoder().encode(this.config.jwtSecret);
    if (this.config.jwtPublicKey) {
      const pem = this.config.jwtPublicKey.includes('-----BEGIN')
        ? this.config.jwtPublicKey
        : existsSync(this.config.jwtPublicKey)
          ? readFileSync(this.config.jwtPublicKey, 'utf8')
          : '';
      if (!pem) throw new Error(`jwtPublicKey is neither PEM text nor a readable file: ${this.config.jwtPublicKey}`);
      keys.rs = await importSPKI(pem, 'RS256');
    }
    this.jwtKeys = keys.hs || keys.rs ? keys : undefined;
    this.sweepTimer = setInterval(() => void this.sweep(), this.config.tokenSweepMs);
    this.sweepTimer.unref();
  }

  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  get tokenIdleSeconds(): number {
    return this.config.tokenIdleSeconds;
  }

  // ---- passwords and login -------------------------------------------------

  async createUser(name: string, password: string, role: Role): Promise<UserRecord> {
    return this.store.createUser({ name, role, passwordHash: await hashPassword(password), createdAt: this.clock.now() });
  }

  async setPassword(userId: string, password: string): Promise<UserRecord | null> {
    return this.store.updateUser(userId, { passwordHash: await hashPassword(password) });
  }

  /**
   * Counts failed logins across the cluster instead of per node: `byName`
   * per user name (over its limit, the name is slowed down), `byPair` per
   * "address/name" pair (over its limit, the pair is refused), and, when
   * given, `byTokenAddress` per address for failed token presentations (its
   * limit should be `tokenFailuresPerAddress`; without it they count per node).
   */
  useSharedFailureCounters(byName: SharedFailureCounter, byPair: SharedFailureCounter, byTokenAddress?: SharedFailureCounter): void {
    this.shared = { byName, byPair, byTokenAddress };
  }

  /**
   * The delay before a password check of `name` from `address`: none for an
   * address that has logged in as this name before, nor while the name's
   * failures come from a single address (the pair lock handles that);
   * otherwise, once the name has `loginMaxAttempts` failures in the window,
   * NAME_DELAY_FIRST_MS doubled per further failure, at most NAME_DELAY_MAX_MS.
   */
  async loginSlowdownMs(name: string, address: string): Promise<number> {
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

  private async loginFailed(nameKey: string, address: string): Promise<void> {
    this.failuresByName.hit(nameKey, address);
    await this.shared?.byName.hit(nameKey).catch(() => undefined);
  }

  private async loginSucceeded(pair: string): Promise<void> {
    this.failuresByPair.reset(pair);
    this.goodPairs.delete(pair);
    if (this.goodPairs.size >= GOOD_PAIRS_MAX) {
      const oldest = this.goodPairs.keys().next();
      if (!oldest.done) this.goodPairs.delete(oldest.value);
    }
    this.goodPairs.set(pair, this.clock.now());
    await this.shared?.byPair.reset(pair).catch(() => undefined);
  }

  /**
   * Checks a user name and password from `address`. Refused (rate_limited)
   * after `loginMaxAttempts` failures of this name from this address; slowed
   * down (see loginSlowdownMs) when the name fails from many addresses.
   */
  async checkPassword(name: string, password: string, address: string): Promise<UserRecord> {
    const nameKey = name.toLowerCase();
    const pair = pairKey(nameKey, address);
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
    const slow = await this.loginSlowdownMs(nameKey, address);
    if (slow > 0) await this.pause(slow);
    const user = await this.store.getUserByName(name);
    // Hash even for unknown users so timing does not reveal which names exist.
    const ok = user ? await verifyPassword(password, user.passwordHash) : await verifyPassword(password, DUMMY_HASH);
    if (!user || !ok) {
      await this.loginFailed(nameKey, address);
      throw new AuthError('bad_credentials', 'wrong user name or password');
    }
    await this.loginSucceeded(pair);
    if (user.disabled) throw new AuthError('user_disabled', `user "${name}" is disabled; ask an administrator`);
    return user;
  }

  /** Logs in with name and password and issues an idle-expiring token. */
  async login(name: string, password: string, address: string): Promise<{ token: string; user: UserRecord }> {
    const user = await this.checkPassword(name, password, address);
    const token = await this.issueToken(user, { idleExpiry: true });
    return { token, user };
  }

  /**
   * Issues a token for a user. Login tokens idle-expire; tokens for scripts
   * (`herald token issue`) do not, and may carry an absolute expiry.
   */
  async issueToken(user: UserRecord, opts: { idleExpiry: boolean; expiresAt?: number | null }): Promise<string> {
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    const now = this.clock.now();
    const record: TokenRecord = {
      hash: hashToken(token),
      userId: user.id,
      createdAt: now,
      lastUsedAt: now,
      expiresAt: opts.expiresAt ?? null,
      idleExpiry: opts.idleExpiry,
    };
    await this.store.insertToken(record);
    this.refused.delete(record.hash);
    this.tokens.set(record.hash, { record, user, persistedLastUsedAt: now });
    return token;
  }

  // ---- authenticating a presented token ------------------------------------

  /**
   * Resolves a token (login token or JWT) to a principal.
   * `renew` marks an authenticated HTTP call, which extends an idle-expiring token.
   * `address` is the client's, given where a token is presented on its own
   * (not where a password field is tried as a token first): a refused token
   * (unknown, dead or forged) counts against the address, and past
   * `tokenFailuresPerAddress` in the login window the address gets
   * rate_limited for any token but a live login token this node already holds.
   * A token refused lately counts once, however often it comes back.
   */
  async authenticate(token: string, opts: { renew: boolean; address?: string }): Promise<Principal> {
    if (!token) throw new AuthError('invalid_token', 'no token given; log in and pass the token');
    const { address } = opts;
    const jwt = JWT_SHAPE.test(token) && this.jwtKeys !== undefined;
    const hash = hashToken(token);
    if (address !== undefined) {
      const wait = await this.tokenWait(address);
      if (wait > 0 && (jwt || !this.liveHere(hash))) {
        const seconds = Math.ceil(wait / 1000);
        throw new AuthError('rate_limited', `too many failed token presentations from this address; try again in ${seconds} s`, seconds);
      }
    }
    const known = this.refusedLately(hash);
    // An unknown login token stays unknown: answered again without a store read. A dead one is read
    // again (another node's renewal may not be stored yet), a JWT checked again (nbf may pass); neither recounted.
    if (known && !jwt && known.code === 'invalid_token') throw new AuthError(known.code, known.message);
    try {
      return jwt ? await this.authenticateJwt(token) : await this.authenticateLoginToken(hash, opts.renew);
    } catch (err) {
      if (err instanceof AuthError && (err.code === 'invalid_token' || err.code === 'token_expired') && !known) {
        this.rememberRefused(hash, err);
        if (address !== undefined) await this.tokenFailed(address);
      }
      throw err;
    }
  }

  private async authenticateLoginToken(hash: string, renew: boolean): Promise<Principal> {
    const now = this.clock.now();
    let cached = this.tokens.get(hash);
    if (!cached || this.deadAt(cached.record, now)) cached = await this.reload(hash);
    if (!cached) throw new AuthError('invalid_token', 'token is invalid or expired; log in again');
    // A dead token stays cached (so a watching session is still told "expired"; the sweep drops it)
    // and stored (so it is answered "expired" for EXPIRED_MEMORY_MS; the purge drops it).
    if (this.deadAt(cached.record, now)) throw new AuthError('token_expired', 'token expired; log in again');
    if (cached.user.disabled) throw new AuthError('user_disabled', `user "${cached.user.name}" is disabled`);
    if (renew) this.renew(cached, now);
    return { userId: cached.user.id, name: cached.user.name, role: cached.user.role, credential: { kind: 'token', hash } };
  }

  /** A login token this node holds, alive, of a user not disabled: accepted without a store read. */
  private liveHere(hash: string): boolean {
    const cached = this.tokens.get(hash);
    return cached !== undefined && !cached.user.disabled && !this.deadAt(cached.record, this.clock.now());
  }

  private async tokenWait(address: string): Promise<number> {
    const local = this.tokenFailures.blockedFor(address);
    if (!this.shared?.byTokenAddress) return local;
    try {
      return Math.max(local, await this.shared.byTokenAddress.blockedFor(address));
    } catch {
      return local;
    }
  }

  private async tokenFailed(address: string): Promise<void> {
    this.tokenFailures.hit(address);
    await this.shared?.byTokenAddress?.hit(address).catch(() => undefined);
  }

  private refusedLately(hash: string): AuthError | undefined {
    const r = this.refused.get(hash);
    if (!r) return undefined;
    if (this.clock.now() < r.until) return r.error;
    this.refused.delete(hash);
    return undefined;
  }

  private rememberRefused(hash: string, error: AuthError): void {
    if (this.refused.size >= REFUSED_MAX) {
      const oldest = this.refused.keys().next();
      if (!oldest.done) this.refused.delete(oldest.value);
    }
    this.refused.set(hash, { error, until: this.clock.now() + this.windowMs });
  }

  /**
   * Extends the idle deadline of the principal's login token, as an HTTP call
   * does; for protocols whose traffic counts as use (a SEND on `/stomp`).
   * Cheap enough for every frame: no store round trip per call (writes are
   * batched as for HTTP renewals). Other credentials have nothing to renew.
   */
  renewPrincipal(p: Principal): void {
    const c = p.credential;
    if (c.kind !== 'token') return;
    const now = this.clock.now();
    const cached = this.tokens.get(c.hash);
    if (cached) {
      if (!this.deadAt(cached.record, now)) this.renew(cached, now);
      return;
    }
    // Not cached here (dropped after a user change): read it once, then renew.
    if (this.renewing.has(c.hash)) return;
    this.renewing.add(c.hash);
    void this.reload(c.hash)
      .then((fresh) => {
        const at = this.clock.now();
        if (fresh && !this.deadAt(fresh.record, at)) this.renew(fresh, at);
      })
      .catch((err: unknown) => this.log.warn({ err }, 'could not renew a token'))
      .finally(() => this.renewing.delete(c.hash));
  }

  private deadAt(t: TokenRecord, now: number): boolean {
    if (t.expiresAt !== null && now >= t.expiresAt) return true;
    return t.idleExpiry && now - t.lastUsedAt >= this.idleMs;
  }

  private async reload(hash: string): Promise<CachedToken | undefined> {
    const record = await this.store.getToken(hash);
    if (!record) {
      this.forget(hash);
      return undefined;
    }
    const user = await this.store.getUserById(record.userId);
    if (!user) return undefined;
    const cached = { record, user, persistedLastUsedAt: record.lastUsedAt };
    this.tokens.set(hash, cached);
    return cached;
  }

  private forget(hash: string): void {
    this.tokens.delete(hash);
  }

  private renew(cached: CachedToken, now: number): void {
    cached.record.lastUsedAt = now;
    if (now - cached.persistedLastUsedAt >= this.touchPersistMs) {
      cached.persistedLastUsedAt = now;
      void this.store
        .touchToken(cached.record.hash, now)
        .catch((err: unknown) => this.log.warn({ err }, 'could not record token use'));
    }
  }

  private async authenticateJwt(token: string): Promise<Principal> {
    const keys = this.jwtKeys!;
    let payload: JWTPayload;
    try {
      const verified = await jwtVerify(
        token,
        async (header) => {
          if (header.alg === 'HS256' && keys.hs) return keys.hs;
          if (header.alg === 'RS256' && keys.rs) return keys.rs;
          throw new AuthError('invalid_token', `JWT algorithm ${String(header.alg)} is not accepted here`);
        },
        {
          algorithms: ['HS256', 'RS256'],
          currentDate: new Date(this.clock.now()),
          ...(this.config.jwtIssuer ? { issuer: this.config.jwtIssuer } : {}),
          ...(this.config.jwtAudience ? { audience: this.config.jwtAudience } : {}),
        },
      );
      payload = verified.payload;
    } catch (err) {
      if (err instanceof AuthError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw new AuthError('token_expired', 'JWT expired (exp is in the past)');
      if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
        throw new AuthError('invalid_token', 'JWT signature does not verify');
      }
      if (err instanceof joseErrors.JWTClaimValidationFailed) {
        throw new AuthError('invalid_token', `JWT claim "${err.claim}" is not acceptable: ${err.reason}`);
      }
      throw new AuthError('invalid_token', `JWT is not valid: ${(err as Error).message}`);
    }
    if (typeof payload.sub !== 'string' || payload.sub === '') {
      throw new AuthError('invalid_token', 'JWT has no "sub" claim naming the user');
    }
    const credential: Credential = {
      kind: 'jwt',
      key: 'jwt:' + hashToken(token),
      expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : null,
    };
    // A JWT may name a Herald user (by id or name); that user's role and state win.
    const user = (await this.store.getUserById(payload.sub)) ?? (await this.store.getUserByName(payload.sub));
    if (user) {
      if (user.disabled) throw new AuthError('user_disabled', `user "${user.name}" is disabled`);
      if (user.tokensValidAfter > 0 && (typeof payload.iat !== 'number' || payload.iat * 1000 <= user.tokensValidAfter)) {
        throw new AuthError(
          'invalid_token',
          `JWT was issued ${typeof payload.iat === 'number' ? 'before' : '(no iat) before'} the tokens of user "${user.name}" were revoked at ${new Date(user.tokensValidAfter).toISOString()}; issue a new one`,
        );
      }
      return { userId: user.id, name: user.name, role: user.role, credential };
    }
    const name = typeof payload['name'] === 'string' ? payload['name'] : payload.sub;
    const role = isRole(payload['role']) ? payload['role'] : 'user';
    return { userId: payload.sub, name, role, credential };
  }

  // ---- death of credentials --------------------------------------------------

  /**
   * Calls `onDeath` once when the principal's credential dies. Returns the
   * function that stops watching (call it when the session closes).
   * Login tokens die idle or revoked; JWTs at `exp` or when their user's
   * tokens are revoked; `expiring` credentials at `expiresAt` (found by the
   * sweep, within `tokenSweepMs`) or when their user's tokens are revoked.
   */
  watch(principal: Principal, onDeath: DeathCallback): () => void {
    const c = principal.credential;
    // JWTs without exp are watched too: revoking their user's tokens ends them.
    if (c.kind !== 'token' && c.kind !== 'jwt' && c.kind !== 'expiring') return () => {};
    const key = c.kind === 'token' ? c.hash : c.kind === 'jwt' ? c.key : 'expiring:' + c.key;
    let entry = this.watchers.get(key);
    if (!entry) {
      entry = { credential: c, userId: principal.userId, callbacks: new Set() };
      this.watchers.set(key, entry);
    }
    entry.callbacks.add(onDeath);
    const owner = entry;
    return () => {
      owner.callbacks.delete(onDeath);
      if (owner.callbacks.size === 0 && this.watchers.get(key) === owner) this.watchers.delete(key);
    };
  }

  private fire(key: string, reason: DeathReason): void {
    const entry = this.watchers.get(key);
    if (!entry) return;
    this.watchers.delete(key);
    for (const cb of entry.callbacks) {
      try {
        cb(reason);
      } catch (err) {
        this.log.error({ err }, 'token death callback failed');
      }
    }
  }

  /**
   * Finds watched credentials that have died. Runs on a timer; tests call it
   * directly after moving a manual clock. Also purges dead tokens from the store.
   */
  async sweep(): Promise<void> {
    const now = this.clock.now();
    for (const [key, entry] of [...this.watchers]) {
      const c = entry.credential;
      if (c.kind === 'jwt' || c.kind === 'expiring') {
        if (c.expiresAt !== null && now >= c.expiresAt) this.fire(key, 'expired');
        continue;
      }
      if (c.kind !== 'token') continue;
      const cached = this.tokens.get(key);
      if (cached && !this.deadAt(cached.record, now)) continue;
      // Looks dead here: the store has the last word (another node may have renewed it).
      const fresh = await this.reload(key).catch(() => undefined);
      if (fresh && !this.deadAt(fresh.record, now)) continue;
      const idledOut = fresh !== undefined || (cached !== undefined && this.deadAt(cached.record, now));
      this.fire(key, idledOut ? 'expired' : 'revoked');
    }
    // Cached tokens no longer watched and dead can go.
    for (const [hash, cached] of this.tokens) if (this.deadAt(cached.record, now)) this.tokens.delete(hash);
    this.failuresByName.prune();
    this.failuresByPair.prune();
    this.tokenFailures.prune();
    for (const [hash, r] of this.refused) {
      if (now < r.until) break; // in time order: the rest are younger
      this.refused.delete(hash);
    }
    if (now - this.lastPurge >= 60_000) {
      this.lastPurge = now;
      // Dead tokens are kept EXPIRED_MEMORY_MS past their death, to be answered "token expired".
      await this.store
        .deleteDeadTokens(now - this.idleMs - EXPIRED_MEMORY_MS, now - EXPIRED_MEMORY_MS)
        .catch((err: unknown) => this.log.warn({ err }, 'could not purge dead tokens'));
    }
  }
  private lastPurge = 0;

  /** Logout: the token dies now, and sessions bound to it are told "revoked". */
  async revokeToken(token: string): Promise<boolean> {
    const hash = hashToken(token);
    this.forget(hash);
    const existed = await this.store.deleteToken(hash);
    this.fire(hash, 'revoked');
    this.onCredentialChange?.({ kind: 'tokens', hashes: [hash] });
    return existed;
  }

  /**
   * Kills every token of a user (password change, disable, console "revoke"):
   * login tokens are deleted, and JWTs issued for the user up to now are
   * refused from now on (their `iat` is not after the revocation).
   */
  async revokeUser(userId: string): Promise<number> {
    const hashes = await this.store.deleteTokensOfUser(userId);
    await this.store.updateUser(userId, { tokensValidAfter: this.clock.now() });
    this.dropCachedUser(userId);
    for (const hash of hashes) this.fire(hash, 'revoked');
    this.fireJwtsOf(userId);
    this.onCredentialChange?.({ kind: 'tokens', hashes, userId });
    return hashes.length;
  }

  /** Sessions authenticated by a JWT or an expiring credential of this user: told "revoked". */
  private fireJwtsOf(userId: string): void {
    for (const [key, entry] of [...this.watchers]) {
      const kind = entry.credential.kind;
      if ((kind === 'jwt' || kind === 'expiring') && entry.userId === userId) this.fire(key, 'revoked');
    }
  }

  /** Drops cached user data after a change (role, disabled) so the next call reads the store. */
  invalidateUser(userId: string): void {
    this.dropCachedUser(userId);
    this.onCredentialChange?.({ kind: 'user', userId });
  }

  private dropCachedUser(userId: string): void {
    for (const [hash, cached] of this.tokens) if (cached.user.id === userId) this.tokens.delete(hash);
  }

  /** A revocation or user change made on another node: the same effect here, at once. */
  applyRemoteChange(change: CredentialChange): void {
    if (change.userId !== undefined) this.dropCachedUser(change.userId);
    if (change.kind === 'tokens') {
      for (const hash of change.hashes) {
        this.forget(hash);
        this.fire(hash, 'revoked');
      }
      if (change.userId !== undefined) this.fireJwtsOf(change.userId);
    }
  }
}

/** A valid scrypt hash of a random password, so unknown users cost the same time. */
const DUMMY_HASH = await hashPassword(randomBytes(12).toString('hex'));
