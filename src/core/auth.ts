/**
 * Authentication: passwords, login tokens, JWTs, and the death of tokens.
 *
 * Login tokens are 128 random bits in base64url (22 characters, safe inside a
 * URL and a STOMP destination such as `/user/{token}/queue/strm`), stored as
 * SHA-256 hashes. A login token dies after `tokenIdleSeconds` without an
 * authenticated HTTP call; each such call renews it. Socket traffic does not
 * renew a token (seed 000: the socket session dies with the HTTP token).
 *
 * Sessions bound to a credential register with `watch`; when the credential
 * dies (idle expiry, JWT `exp`, logout, revocation) their callback runs with
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
import { WindowCounter } from './rate-limit.js';

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
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** A change other nodes must apply at once (cluster mode). */
export type CredentialChange = { kind: 'tokens'; hashes: string[]; userId?: string } | { kind: 'user'; userId: string };

/** Failed-login counting shared by every node (cluster mode: Redis). */
export interface SharedFailureCounter {
  blockedFor(key: string): Promise<number>;
  hit(key: string): Promise<void>;
  reset(key: string): Promise<void>;
}

export class Auth {
  /** Told of every revocation and user change made on this node (cluster mode passes them on). */
  onCredentialChange: ((change: CredentialChange) => void) | undefined;
  private shared: { byName: SharedFailureCounter; byAddress: SharedFailureCounter } | undefined;
  private readonly idleMs: number;
  /** Touches closer together than this reach the store as one write. */
  private readonly touchPersistMs: number;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly watchers = new Map<string, { credential: Credential; userId: string; callbacks: Set<DeathCallback> }>();
  private readonly failuresByName: WindowCounter;
  private readonly failuresByAddress: WindowCounter;
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
    this.failuresByName = new WindowCounter(config.loginMaxAttempts, windowMs, clock);
    this.failuresByAddress = new WindowCounter(config.loginMaxAttempts, windowMs, clock);
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

  /** Counts failed logins across the cluster instead of per node. */
  useSharedFailureCounters(byName: SharedFailureCounter, byAddress: SharedFailureCounter): void {
    this.shared = { byName, byAddress };
  }

  /** How long a name or address must wait: the cluster's count, or this node's when that cannot be read. */
  private async loginWait(nameKey: string, address: string): Promise<number> {
    const local = Math.max(this.failuresByName.blockedFor(nameKey), this.failuresByAddress.blockedFor(address));
    if (!this.shared) return local;
    try {
      const [a, b] = await Promise.all([this.shared.byName.blockedFor(nameKey), this.shared.byAddress.blockedFor(address)]);
      return Math.max(a, b, local);
    } catch {
      return local;
    }
  }

  private async loginFailed(nameKey: string, address: string): Promise<void> {
    this.failuresByName.hit(nameKey);
    this.failuresByAddress.hit(address);
    if (this.shared) await Promise.all([this.shared.byName.hit(nameKey), this.shared.byAddress.hit(address)]).catch(() => undefined);
  }

  /** Checks a user name and password; rate-limited per name and per address. */
  async checkPassword(name: string, password: string, address: string): Promise<UserRecord> {
    const nameKey = name.toLowerCase();
    const wait = await this.loginWait(nameKey, address);
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      throw new AuthError('rate_limited', `too many failed logins; try again in ${seconds} s`, seconds);
    }
    const user = await this.store.getUserByName(name);
    // Hash even for unknown users so timing does not reveal which names exist.
    const ok = user ? await verifyPassword(password, user.passwordHash) : await verifyPassword(password, DUMMY_HASH);
    if (!user || !ok) {
      await this.loginFailed(nameKey, address);
      throw new AuthError('bad_credentials', 'wrong user name or password');
    }
    if (user.disabled) throw new AuthError('user_disabled', `user "${name}" is disabled; ask an administrator`);
    this.failuresByName.reset(nameKey);
    await this.shared?.byName.reset(nameKey).catch(() => undefined);
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
    this.tokens.set(record.hash, { record, user, persistedLastUsedAt: now });
    return token;
  }

  // ---- authenticating a presented token ------------------------------------

  /**
   * Resolves a token (login token or JWT) to a principal.
   * `renew` marks an authenticated HTTP call, which extends an idle-expiring token.
   */
  async authenticate(token: string, opts: { renew: boolean }): Promise<Principal> {
    if (!token) throw new AuthError('invalid_token', 'no token given; log in and pass the token');
    if (JWT_SHAPE.test(token) && this.jwtKeys) return this.authenticateJwt(token);
    const hash = hashToken(token);
    const now = this.clock.now();
    let cached = this.tokens.get(hash);
    if (!cached || this.deadAt(cached.record, now)) cached = await this.reload(hash);
    if (!cached) throw new AuthError('invalid_token', 'token is invalid or expired; log in again');
    if (this.deadAt(cached.record, now)) {
      // Stays cached (dead) so a watching session is still told "expired"; the sweep drops it.
      void this.store.deleteToken(hash).catch((err: unknown) => this.log.warn({ err }, 'could not delete a dead token'));
      throw new AuthError('token_expired', 'token expired; log in again');
    }
    if (cached.user.disabled) throw new AuthError('user_disabled', `user "${cached.user.name}" is disabled`);
    if (opts.renew) this.renew(cached, now);
    return { userId: cached.user.id, name: cached.user.name, role: cached.user.role, credential: { kind: 'token', hash } };
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
   */
  watch(principal: Principal, onDeath: DeathCallback): () => void {
    const c = principal.credential;
    // JWTs without exp are watched too: revoking their user's tokens ends them.
    if (c.kind !== 'token' && c.kind !== 'jwt') return () => {};
    const key = c.kind === 'token' ? c.hash : c.key;
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
      if (c.kind === 'jwt') {
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
    this.failuresByAddress.prune();
    if (now - this.lastPurge >= 60_000) {
      this.lastPurge = now;
      await this.store
        .deleteDeadTokens(now - this.idleMs, now)
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

  /** Sessions authenticated by a JWT of this user: told "revoked". */
  private fireJwtsOf(userId: string): void {
    for (const [key, entry] of [...this.watchers]) {
      if (entry.credential.kind === 'jwt' && entry.userId === userId) this.fire(key, 'revoked');
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
