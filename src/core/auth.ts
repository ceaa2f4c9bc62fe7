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
 * The parts live beside this file, and `Auth` puts them together:
 * - principal.ts: principals, credentials, AuthError, token hashes;
 * - jwt.ts: JWT keys and verification;
 * - login-limits.ts: the pair lock, the name slow-down and the token-failure
 *   limit (none of which lets a stranger lock a user out), over the counters
 *   of rate-limit.ts;
 * - credential-watch.ts: sessions bound to a credential, told when it dies.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Role, Store, TokenRecord, UserRecord } from '../store/store.js';
import { OutageLog, repeat } from './background.js';
import { AuthHook, EXTERNAL_PASSWORD_HASH, externalUsers } from './auth-hook.js';
import { CredentialWatchers, type DeathCallback } from './credential-watch.js';
import type { JwksCache } from './jwks.js';
import { loadJwtKeys, looksLikeJwt, verifyJwt, type JwtKeys } from './jwt.js';
import { LoginLimits, type SharedFailureCounter } from './login-limits.js';
import { hashPassword, passwordChecksBusy, verifyPassword } from './passwords.js';
import { AuthError, hashToken, type CredentialChange, type Principal } from './principal.js';

export { AuthError, hashToken, isRole } from './principal.js';
export type { AuthErrorCode, Credential, CredentialChange, DeathReason, Principal } from './principal.js';
export { NAME_DELAY_FIRST_MS, NAME_DELAY_MAX_MS } from './login-limits.js';
export type { SharedFailureCounter } from './login-limits.js';
export type { DeathCallback } from './credential-watch.js';

interface CachedToken {
  record: TokenRecord;
  user: UserRecord;
  /** Last use we wrote to the store; writes are batched to one per touchPersistMs. */
  persistedLastUsedAt: number;
  /**
   * The principal of this token, made once and shared by every session that presents it (a user
   * change drops the cached token, so the next presentation makes a new one from the store).
   */
  principal?: Principal;
}

const TOKEN_BYTES = 16;
/** How long a dead login token is still answered "token expired" (it stays in the store that long). */
export const EXPIRED_MEMORY_MS = 3_600_000;

export class Auth {
  /** Told of every revocation and user change made on this node (cluster mode passes them on). */
  onCredentialChange: ((change: CredentialChange) => void) | undefined;
  /** Waits out a login slowdown (tests replace it to record the delays instead of sleeping). */
  pause: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms));
  private readonly idleMs: number;
  /** Touches closer together than this reach the store as one write. */
  private readonly touchPersistMs: number;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly watchers: CredentialWatchers;
  readonly limits: LoginLimits;
  /** The application's connect hook (authHookUrl), if configured: see connect-login.ts. */
  readonly hook: AuthHook | undefined;
  /** Tokens `renewPrincipal` is reading from the store (not cached here). */
  private readonly renewing = new Set<string>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private jwtKeys: JwtKeys | undefined;
  /** Token uses the store could not record (it is down): logged once per outage. */
  private readonly touchOutage: OutageLog;

  constructor(
    private readonly store: Store,
    private readonly config: Config,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.idleMs = config.tokenIdleSeconds * 1000;
    this.touchPersistMs = Math.min(15_000, Math.floor(this.idleMs / 20));
    this.limits = new LoginLimits(config, clock);
    this.watchers = new CredentialWatchers(log);
    this.touchOutage = new OutageLog(log, 'recording token use');
    this.hook = config.authHookUrl
      ? new AuthHook({ url: config.authHookUrl, timeoutMs: config.authHookTimeoutMs, cacheSeconds: config.authHookCacheSeconds, provision: externalUsers(store, clock), clock, log })
      : undefined;
  }

  /** Loads JWT keys (and fetches the JWKS, whose failure is logged, not thrown) and starts the sweep that finds dead credentials of watched sessions. */
  async start(): Promise<void> {
    this.jwtKeys = await loadJwtKeys(this.config, this.log);
    await this.jwtKeys?.jwks?.start();
    this.sweepTimer = repeat(this.log, 'the token sweep', this.config.tokenSweepMs, () => this.sweep());
  }


  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.jwtKeys?.jwks?.stop();
  }

  /** The key set of `jwtJwksUrl`, for a reload to fetch again; undefined when none is configured. */
  get jwks(): JwksCache | undefined {
    return this.jwtKeys?.jwks;
  }

  get hookMode(): string {
    return this.config.authHookMode;
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
    this.limits.useShared(byName, byPair, byTokenAddress);
  }

  /** The delay before a password check of `name` from `address` (the name slow-down: LoginLimits.slowdownMs). */
  async loginSlowdownMs(name: string, address: string): Promise<number> {
    return this.limits.slowdownMs(name, address);
  }

  /**
   * Checks a user name and password from `address`. Refused (rate_limited)
   * after `loginMaxAttempts` failures of this name from this address; slowed
   * down (see loginSlowdownMs) when the name fails from many addresses.
   */
  async checkPassword(name: string, password: string, address: string): Promise<UserRecord> {
    // A flood of password checks (each an expensive hash) is refused before it counts against anyone.
    if (passwordChecksBusy()) throw new AuthError('rate_limited', 'too many logins are being checked right now; try again in a second', 1);
    await this.limits.admitPasswordAttempt(name, address);
    const slow = await this.loginSlowdownMs(name, address);
    if (slow > 0) await this.pause(slow);
    let user: UserRecord | null;
    try {
      user = await this.store.getUserByName(name);
    } catch (err) {
      await this.limits.passwordUnchecked(name, address);
      throw err;
    }
    // A user of the connect hook has no password here: not a failure of anyone's (see EXTERNAL_PASSWORD_HASH).
    if (user?.passwordHash === EXTERNAL_PASSWORD_HASH) throw new AuthError('bad_credentials', `user "${name}" logs in through the application, not with a password here`);
    // Hash even for unknown users so timing does not reveal which names exist.
    const ok = user ? await verifyPassword(password, user.passwordHash) : await verifyPassword(password, DUMMY_HASH);
    if (!user || !ok) {
      await this.limits.passwordFailed(name, address);
      throw new AuthError('bad_credentials', 'wrong user name or password');
    }
    await this.limits.passwordSucceeded(name, address);
    if (user.disabled) throw new AuthError('user_disabled', `user "${name}" is disabled; ask an administrator`);
    return user;
  }

  /**
   * The user a verified client certificate names (tlsClientCertAsUser): the
   * TLS handshake was the proof, so no password is checked; the user must
   * exist and be enabled, like any other login.
   */
  async certificateUser(name: string): Promise<Principal> {
    const user = await this.store.getUserByName(name);
    if (!user) throw new AuthError('bad_credentials', `the client certificate names user "${name}", who does not exist; create the user first`);
    if (user.disabled) throw new AuthError('user_disabled', `user "${name}" is disabled; ask an administrator`);
    return { userId: user.id, name: user.name, role: user.role, credential: { kind: 'certificate' } };
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
    this.limits.forgetRefused(record.hash);
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
    const jwtKeys = looksLikeJwt(token) ? this.jwtKeys : undefined;
    const hash = hashToken(token);
    if (address !== undefined) {
      const wait = await this.limits.tokenWait(address);
      if (wait > 0 && (jwtKeys || !this.liveHere(hash))) {
        const seconds = Math.ceil(wait / 1000);
        throw new AuthError('rate_limited', `too many failed token presentations from this address; try again in ${seconds} s`, seconds);
      }
    }
    const known = this.limits.refusedLately(hash);
    // An unknown login token stays unknown: answered again without a store read. A dead one is read
    // again (another node's renewal may not be stored yet), a JWT checked again (nbf may pass); neither recounted.
    if (known && !jwtKeys && known.code === 'invalid_token') throw new AuthError(known.code, known.message);
    try {
      return jwtKeys ? await verifyJwt(token, jwtKeys, this.config, this.clock, this.store) : await this.authenticateLoginToken(hash, opts.renew);
    } catch (err) {
      if (err instanceof AuthError && (err.code === 'invalid_token' || err.code === 'token_expired') && !known) {
        this.limits.rememberRefused(hash, err);
        if (address !== undefined) await this.limits.tokenFailed(address);
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
    return (cached.principal ??= { userId: cached.user.id, name: cached.user.name, role: cached.user.role, credential: { kind: 'token', hash } });
  }

  /** A login token this node holds, alive, of a user not disabled: accepted without a store read. */
  private liveHere(hash: string): boolean {
    const cached = this.tokens.get(hash);
    return cached !== undefined && !cached.user.disabled && !this.deadAt(cached.record, this.clock.now());
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
      .catch((err: unknown) => this.touchOutage.failed(err))
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
      void this.store.touchToken(cached.record.hash, now).then(
        () => this.touchOutage.ok(),
        (err: unknown) => this.touchOutage.failed(err),
      );
    }
  }

  // ---- death of credentials --------------------------------------------------

  /**
   * Calls `onDeath` once when the principal's credential dies. Returns the
   * function that stops watching (call it when the session closes).
   * Login tokens die idle or revoked; JWTs at `exp` or when their user's
   * tokens are revoked; `expiring` credentials at `expiresAt` (found by the
   * sweep, within `tokenSweepMs`) or when their user's tokens are revoked;
   * password and client-certificate logins when their user's tokens are revoked.
   */
  watch(principal: Principal, onDeath: DeathCallback): () => void {
    return this.watchers.watch(principal, onDeath);
  }

  /**
   * Finds watched credentials that have died. Runs on a timer; tests call it
   * directly after moving a manual clock. Also purges dead tokens from the store.
   * Without the store, a token that looks dead here is left alone (another
   * node may have renewed it) and the purge waits: the sweep does all it can
   * and then rejects with the store's error, to be tried again at its next run.
   */
  async sweep(): Promise<void> {
    const now = this.clock.now();
    let failure: unknown;
    for (const [key, c] of this.watchers.list()) {
      if (c.kind === 'jwt' || c.kind === 'expiring') {
        if (c.expiresAt !== null && now >= c.expiresAt) this.watchers.fire(key, 'expired');
        continue;
      }
      if (c.kind !== 'token') continue;
      const cached = this.tokens.get(key);
      if (cached && !this.deadAt(cached.record, now)) continue;
      // Looks dead here: the store has the last word (another node may have renewed it).
      let fresh: CachedToken | undefined;
      try {
        fresh = await this.reload(key);
      } catch (err) {
        failure ??= err; // unknown until the store answers: not "revoked"
        continue;
      }
      if (fresh && !this.deadAt(fresh.record, now)) continue;
      const idledOut = fresh !== undefined || (cached !== undefined && this.deadAt(cached.record, now));
      this.watchers.fire(key, idledOut ? 'expired' : 'revoked');
    }
    // Cached tokens no longer watched and dead can go.
    for (const [hash, cached] of this.tokens) if (this.deadAt(cached.record, now)) this.tokens.delete(hash);
    this.limits.prune();
    if (now - this.lastPurge >= 60_000) {
      // Dead tokens are kept EXPIRED_MEMORY_MS past their death, to be answered "token expired".
      try {
        await this.store.deleteDeadTokens(now - this.idleMs - EXPIRED_MEMORY_MS, now - EXPIRED_MEMORY_MS);
        this.lastPurge = now;
      } catch (err) {
        failure ??= err; // purged at the next run instead
      }
    }
    if (failure !== undefined) throw failure;
  }
  private lastPurge = 0;

  /** Logout: the token dies now, and sessions bound to it are told "revoked". */
  async revokeToken(token: string): Promise<boolean> {
    const hash = hashToken(token);
    this.forget(hash);
    const existed = await this.store.deleteToken(hash);
    this.watchers.fire(hash, 'revoked');
    this.onCredentialChange?.({ kind: 'tokens', hashes: [hash] });
    return existed;
  }

  /**
   * Kills every token of a user (password change, disable, console "revoke"):
   * login tokens are deleted, and JWTs issued for the user up to now are
   * refused from now on (their `iat` is not after the revocation). Sessions
   * that logged in with a password or a client certificate end too, on every
   * node (the change carries the user id): otherwise a revocation would leave
   * exactly the connections of a leaked password open.
   */
  async revokeUser(userId: string): Promise<number> {
    const hashes = await this.store.deleteTokensOfUser(userId);
    await this.store.updateUser(userId, { tokensValidAfter: this.clock.now() });
    this.dropCachedUser(userId);
    for (const hash of hashes) this.watchers.fire(hash, 'revoked');
    this.watchers.fireUserCredentials(userId);
    this.onCredentialChange?.({ kind: 'tokens', hashes, userId });
    return hashes.length;
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
        this.watchers.fire(hash, 'revoked');
      }
      if (change.userId !== undefined) this.watchers.fireUserCredentials(change.userId);
    }
  }
}

/** A valid scrypt hash of a random password, so unknown users cost the same time. */
const DUMMY_HASH = await hashPassword(randomBytes(12).toString('hex'));
