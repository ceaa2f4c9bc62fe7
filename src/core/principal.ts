/**
 * Who is calling, and with what: the principal every protocol hands to the
 * core, the credential it presented, and the errors and death reasons that
 * credential can meet. Login tokens are kept only as SHA-256 hashes.
 */
import * as crypto from 'node:crypto';
import { ROLES, type Role } from '../store/store.js';

export type Credential =
  | { kind: 'token'; hash: string }
  | { kind: 'jwt'; key: string; expiresAt: number | null }
  | { kind: 'password' }
  /** A client certificate verified by tlsCaFile, whose CN named the user (tlsClientCertAsUser). */
  | { kind: 'certificate' }
  /** Checked by someone else (an app's user token, a back-end hook) and valid until `expiresAt` (ms). */
  | { kind: 'expiring'; key: string; expiresAt: number }
  | { kind: 'anonymous' };

/** Who is connected or calling: the same shape whatever the protocol. */
export interface Principal {
  userId: string;
  name: string;
  role: Role;
  credential: Credential;
  /**
   * Topic filters this session may publish or subscribe to, granted by the
   * connect hook's answer; absent: the hook set no limit (the ACL still applies).
   */
  grants?: { readonly publish?: readonly string[]; readonly subscribe?: readonly string[] };
}

/** `unavailable`: whoever decides (the connect hook) could not be asked; try again later. */
export type AuthErrorCode = 'invalid_token' | 'token_expired' | 'bad_credentials' | 'user_disabled' | 'rate_limited' | 'unavailable';

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

/** Why a credential died: its time ran out, or someone ended it (logout, revocation). */
export type DeathReason = 'expired' | 'revoked';

/** A change other nodes must apply at once (cluster mode). */
export type CredentialChange = { kind: 'tokens'; hashes: string[]; userId?: string } | { kind: 'user'; userId: string };

/** How a login token is stored and looked up: never the token itself. */
export function hashToken(token: string): string {
  return sha256Hex(token);
}

/**
 * crypto.hash, one call, takes a third of createHash().update().digest()'s
 * time (on every authenticated request); it came in Node 20.12, and the
 * engines field admits 20.10.
 */
const sha256Hex: (text: string) => string =
  typeof crypto.hash === 'function' ? (text) => crypto.hash('sha256', text, 'hex') : (text) => crypto.createHash('sha256').update(text).digest('hex');

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
