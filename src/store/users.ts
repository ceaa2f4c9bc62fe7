/**
 * Users and their opaque tokens: the accounts behind every login.
 * Implemented by sqlite/users.ts and postgres/users.ts.
 */
import type { Page } from './messages.js';

export const ROLES = ['user', 'admin', 'service'] as const;
export type Role = (typeof ROLES)[number];

export interface UserRecord {
  id: string;
  name: string;
  role: Role;
  passwordHash: string;
  disabled: boolean;
  createdAt: number;
  /** Revocation mark (ms): JWTs of this user issued (iat) before it are refused. 0 when never revoked. */
  tokensValidAfter: number;
}

export interface NewUser {
  name: string;
  role: Role;
  passwordHash: string;
  createdAt: number;
}

export interface UserPatch {
  role?: Role;
  passwordHash?: string;
  disabled?: boolean;
  tokensValidAfter?: number;
}

export interface UserQuery {
  /** 1-based. */
  page: number;
  size: number;
  search?: string;
}

export interface TokenRecord {
  /** SHA-256 of the token text, hex. The text itself is never stored. */
  hash: string;
  userId: string;
  createdAt: number;
  lastUsedAt: number;
  /** Absolute expiry (ms since epoch), or null for none. */
  expiresAt: number | null;
  /** True when the token dies after the configured idle time (login tokens). */
  idleExpiry: boolean;
}

/** User accounts. Ids are strings at this boundary; an id that cannot exist finds nothing. */
export interface UserStore {
  /** Creates a user, not disabled and never revoked; DuplicateError if the name is taken. */
  createUser(user: NewUser): Promise<UserRecord>;
  /** The user with this id, or null. */
  getUserById(id: string): Promise<UserRecord | null>;
  /** The user with this name (names are unique), or null. */
  getUserByName(name: string): Promise<UserRecord | null>;
  /** Every user, in creation order. */
  listUsers(): Promise<UserRecord[]>;
  /**
   * One page of users in creation order; with `search`, only those whose
   * name holds it (ignoring ASCII case; `%` and `_` are plain characters).
   */
  queryUsers(query: UserQuery): Promise<Page<UserRecord>>;
  /** How many users exist. */
  countUsers(): Promise<number>;
  /** Changes the fields given; returns the user as it now is, or null if there is none with this id. */
  updateUser(id: string, patch: UserPatch): Promise<UserRecord | null>;
  /**
   * Deletes the user and its login tokens, in one step; false if there is no user with this id.
   * Ids are never reused, so what other tables still hold under the old id (stored messages,
   * thread memberships) never reaches a later user of the same name.
   */
  deleteUser(id: string): Promise<boolean>;
}

/** Opaque tokens, kept by hash. */
export interface TokenStore {
  /** Stores a new token. */
  insertToken(token: TokenRecord): Promise<void>;
  /** The token with this hash, or null. */
  getToken(hash: string): Promise<TokenRecord | null>;
  /** Records a use of the token; a `lastUsedAt` older than the one stored is ignored. */
  touchToken(hash: string, lastUsedAt: number): Promise<void>;
  /** Deletes a token; false if there was none. */
  deleteToken(hash: string): Promise<boolean>;
  /** Deletes every token of a user; returns their hashes. */
  deleteTokensOfUser(userId: string): Promise<string[]>;
  /** Deletes idle-expiring tokens unused since `idleBefore` and tokens past their absolute expiry. */
  deleteDeadTokens(idleBefore: number, now: number): Promise<number>;
}
