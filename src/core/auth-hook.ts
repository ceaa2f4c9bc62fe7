/**
 * The connect hook (`authHookUrl`): the application's back end decides who
 * may connect. Herald POSTs what the client presented (protocol, transport,
 * path, user name, password or token, client id, device, address, TLS
 * certificate subject) and the back end answers
 * `{"allow":true,"user":"alice","roles":["user"],"expiresAt":…,"publish":[…],"subscribe":[…]}`
 * or `{"allow":false,"reason":"…"}`.
 *
 * - Decisions (allow and deny) are cached per credential (user name and
 *   secret) for `authHookCacheSeconds`; concurrent attempts with the same
 *   credential share one request.
 * - A timeout, a network error, a non-2xx answer or an answer that is not
 *   the contract refuses the connection as "unavailable" and is not cached:
 *   nothing hangs, and the next attempt asks again.
 * - At most MAX_IN_FLIGHT requests wait on the back end at once; past that,
 *   connects are refused at once (a flood of made-up credentials cannot pile
 *   up sockets and memory behind a slow back end).
 *
 * The user the back end names is made a Herald user on first sight
 * (`provision`), so its mailbox, stored messages and threads work as for
 * any user.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { DuplicateError, type Role, type Store } from '../store/store.js';
import { OutageLog } from './background.js';
import { askBackEnd, HookFailure, hookUrl } from './hook-http.js';
import { AuthError, type Principal } from './principal.js';

/** What a client presented, as the hook receives it. */
export interface ConnectAttempt {
  protocol: 'stomp' | 'mqtt' | 'json-ws';
  /** tcp, tls, ws or wss. */
  transport: 'tcp' | 'tls' | 'ws' | 'wss';
  /** The WebSocket path, for WebSocket transports. */
  path?: string;
  username?: string;
  /** The password, passcode or token. */
  password?: string;
  clientId?: string;
  device?: string;
  remoteAddress: string;
  /** The verified client certificate's subject (`CN=…,O=…`), over TLS with one. */
  certificateSubject?: string;
}

/** Topic filters the connect answer grants the session (absent: no restriction from the hook). */
export interface HookGrants {
  publish?: readonly string[];
  subscribe?: readonly string[];
}

/** What the back end decided, as cached. */
type Decision =
  | { allow: true; user: string; role: Role; expiresAt: number; grants: HookGrants | undefined }
  | { allow: false; reason: string };

export interface AuthHookOptions {
  url: string;
  timeoutMs: number;
  cacheSeconds: number;
  /** Makes sure the named user exists (creating it on first sight); returns its id, or throws AuthError (disabled). */
  provision(name: string, role: Role): Promise<string>;
  clock: Clock;
  log: Logger;
}

const USER_NAME = /^[A-Za-z0-9._@-]{1,64}$/;
const MAX_IN_FLIGHT = 256;
const MAX_CACHED = 100_000;
const MAX_FILTERS = 1000;

/** Why an answer is not the contract; thrown while reading it. */
class BadAnswer extends HookFailure {}

function roleOf(roles: unknown): Role {
  if (roles === undefined) return 'user';
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) throw new BadAnswer('"roles" must be a list of strings');
  return roles.includes('admin') ? 'admin' : roles.includes('service') ? 'service' : 'user';
}

function filters(name: string, value: unknown): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length > MAX_FILTERS || !value.every((f) => typeof f === 'string' && f.length > 0 && f.length <= 1024)) {
    throw new BadAnswer(`"${name}" must be a list of at most ${MAX_FILTERS} topic filters`);
  }
  return value as string[];
}

/** `expiresAt`: Unix seconds (as a JWT's exp), or an ISO 8601 date. */
function expiryOf(value: unknown): number {
  if (value === undefined || value === null) return Number.POSITIVE_INFINITY;
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value * 1000;
  if (typeof value === 'string') {
    const at = Date.parse(value);
    if (Number.isFinite(at)) return at;
  }
  throw new BadAnswer('"expiresAt" must be Unix seconds or an ISO 8601 date');
}

/** Reads the back end's answer; throws BadAnswer when it is not the contract. */
export function readAnswer(body: unknown): Decision {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadAnswer('the answer is not a JSON object');
  const a = body as Record<string, unknown>;
  if (a['allow'] === false) {
    const reason = typeof a['reason'] === 'string' && a['reason'] ? a['reason'].slice(0, 200) : 'refused by the application';
    return { allow: false, reason };
  }
  if (a['allow'] !== true) throw new BadAnswer('"allow" must be true or false');
  const user = a['user'];
  if (typeof user !== 'string' || !USER_NAME.test(user)) throw new BadAnswer('"user" must be a user name (1 to 64 of A-Z a-z 0-9 . _ @ -)');
  const publish = filters('publish', a['publish']);
  const subscribe = filters('subscribe', a['subscribe']);
  const grants = publish || subscribe ? { ...(publish ? { publish } : {}), ...(subscribe ? { subscribe } : {}) } : undefined;
  return { allow: true, user, role: roleOf(a['roles']), expiresAt: expiryOf(a['expiresAt']), grants };
}

export class AuthHook {
  private readonly cache = new Map<string, { until: number; decision: Decision }>();
  private readonly inFlight = new Map<string, Promise<Decision>>();
  private readonly outage: OutageLog;
  /** Requests made to the back end (tests and metrics read it). */
  requests = 0;

  constructor(private readonly options: AuthHookOptions) {
    hookUrl('authHookUrl', options.url);
    this.outage = new OutageLog(options.log, `asking the connect hook at ${options.url}`);
  }

  /** The principal the back end allows for this attempt; AuthError when it refuses or cannot be asked. */
  async decide(attempt: ConnectAttempt): Promise<Principal> {
    const key = createHash('sha256')
      .update(attempt.username ?? '')
      .update('\0')
      .update(attempt.password ?? '')
      .update('\0')
      .update(attempt.certificateSubject ?? '')
      .digest('hex');
    const now = this.options.clock.now();
    const cached = this.cache.get(key);
    let decision: Decision;
    if (cached && cached.until > now) decision = cached.decision;
    else {
      if (cached) this.cache.delete(key);
      decision = await this.ask(key, attempt);
    }
    if (!decision.allow) throw new AuthError('bad_credentials', decision.reason);
    if (decision.expiresAt <= this.options.clock.now()) throw new AuthError('token_expired', 'the application says this login has expired');
    const userId = await this.options.provision(decision.user, decision.role);
    return {
      userId,
      name: decision.user,
      role: decision.role,
      credential: { kind: 'expiring', key: 'hook:' + key, expiresAt: decision.expiresAt },
      ...(decision.grants ? { grants: decision.grants } : {}),
    };
  }

  private ask(key: string, attempt: ConnectAttempt): Promise<Decision> {
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    if (this.inFlight.size >= MAX_IN_FLIGHT) {
      return Promise.reject(new AuthError('unavailable', 'too many logins are waiting for the authentication service; try again shortly', 1));
    }
    const request = this.post(attempt).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, request);
    return request.then((decision) => {
      if (this.options.cacheSeconds > 0) {
        if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
        this.cache.set(key, { until: this.options.clock.now() + this.options.cacheSeconds * 1000, decision });
      }
      return decision;
    });
  }

  private async post(attempt: ConnectAttempt): Promise<Decision> {
    this.requests++;
    let decision: Decision;
    try {
      decision = readAnswer(await askBackEnd(this.options.url, attempt, this.options.timeoutMs));
    } catch (err) {
      if (!(err instanceof HookFailure)) throw err;
      this.outage.failed(err);
      throw new AuthError('unavailable', `the authentication service could not decide (${err.message}); try again later`);
    }
    this.outage.ok();
    return decision;
  }
}

/**
 * The password hash of a user the connect hook made: no password opens it
 * (verifyPassword refuses anything that is not an scrypt hash, at once), and
 * Herald's own password check skips it without counting a failure, so the
 * application's users are never locked out by Herald's login limits.
 */
export const EXTERNAL_PASSWORD_HASH = 'external:connect-hook';

/** `provision` for AuthHook over the store: the user by that name, made on first sight; a disabled one is refused. */
export function externalUsers(store: Store, clock: Clock): (name: string, role: Role) => Promise<string> {
  return async (name, role) => {
    let user = await store.getUserByName(name);
    if (!user) {
      try {
        user = await store.createUser({ name, role, passwordHash: EXTERNAL_PASSWORD_HASH, createdAt: clock.now() });
      } catch (err) {
        // Another connection (or node) made it first.
        if (!(err instanceof DuplicateError)) throw err;
        user = await store.getUserByName(name);
        if (!user) throw err;
      }
    }
    if (user.disabled) throw new AuthError('user_disabled', `user "${name}" is disabled; ask an administrator`);
    return user.id;
  };
}
