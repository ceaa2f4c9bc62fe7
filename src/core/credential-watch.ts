/**
 * Sessions bound to a credential, and what to tell them when it dies. A
 * protocol registers each authenticated session with `watch`; when the
 * credential dies (idle expiry, JWT `exp`, an `expiring` credential's
 * `expiresAt`, logout, revocation) the session's callback runs with the
 * reason, so the protocol can tell the client in words before closing.
 * Auth decides when a credential is dead; this only keeps the list.
 */
import type { Logger } from '../log.js';
import type { Credential, DeathReason, Principal } from './principal.js';

export type DeathCallback = (reason: DeathReason) => void;

interface Watched {
  credential: Credential;
  userId: string;
  callbacks: Set<DeathCallback>;
}

/**
 * The key a credential is watched under: a login token by its hash, others
 * by their own key; password and certificate logins, which have no key of
 * their own, by their user (revoking the user's tokens ends them all).
 */
function watchKey(principal: Principal): string | undefined {
  const c = principal.credential;
  if (c.kind === 'token') return c.hash;
  if (c.kind === 'jwt') return c.key;
  if (c.kind === 'expiring') return 'expiring:' + c.key;
  if (c.kind === 'password' || c.kind === 'certificate') return `${c.kind}:${principal.userId}`;
  return undefined;
}

/** Credentials that end when their user's tokens are revoked, though no token of theirs is deleted. */
const ENDED_WITH_USER: ReadonlySet<Credential['kind']> = new Set(['jwt', 'expiring', 'password', 'certificate']);

export class CredentialWatchers {
  private readonly watchers = new Map<string, Watched>();

  constructor(private readonly log: Logger) {}

  /** See Auth.watch. Anonymous sessions, which nothing can revoke, are not kept. */
  watch(principal: Principal, onDeath: DeathCallback): () => void {
    const c = principal.credential;
    // JWTs without exp, and password logins, are watched too: revoking their user's tokens ends them.
    const key = watchKey(principal);
    if (key === undefined) return () => {};
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

  /** The watched credentials now, by key (a copy: firing during the walk is safe). */
  list(): [string, Credential][] {
    return [...this.watchers].map(([key, entry]) => [key, entry.credential]);
  }

  /** The credential under `key` died: its sessions are told once, and it is no longer watched. */
  fire(key: string, reason: DeathReason): void {
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
   * Sessions of this user authenticated by a JWT, an expiring credential, a
   * password or a client certificate: told "revoked" (their login tokens are
   * fired by hash).
   */
  fireUserCredentials(userId: string): void {
    for (const [key, entry] of [...this.watchers]) {
      if (ENDED_WITH_USER.has(entry.credential.kind) && entry.userId === userId) this.fire(key, 'revoked');
    }
  }
}
