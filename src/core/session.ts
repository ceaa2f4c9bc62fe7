/**
 * Sessions: one connected client, whatever its protocol. The registry knows
 * every session on this node, by id and by user, and ends them when their
 * credential dies or the server shuts down.
 */
import type { Auth, Principal } from './auth.js';
import type { Credential } from './principal.js';
import type { Metrics } from './metrics.js';
import type { Protocol } from './protocol-names.js';

export type { Protocol } from './protocol-names.js';

export type CloseCode = 'shutdown' | 'token_expired' | 'token_revoked' | 'kicked';

/** Why the server ends a session; protocols turn it into an ERROR frame, a close code or a DISCONNECT. */
export interface CloseReason {
  code: CloseCode;
  message: string;
  /**
   * Shutdown: how long the client should wait before it reconnects, spread
   * over the drain window so the clients of a draining node do not all come
   * back in the same second. Protocols that can say so pass it on.
   */
  reconnectAfterMs?: number;
}

export interface SessionInfo {
  readonly id: string;
  readonly protocol: Protocol;
  readonly principal: Principal;
  readonly remoteAddress: string;
  readonly device: string;
  readonly connectedAt: number;
}

/** One subscription of a session, as the console shows it. */
export interface SubscriptionInfo {
  /** As the client wrote it: `/topic/a.*`, `a/+/c`, `$share/g/a/#`, `/user/queue/x`, `/queue/jobs`. */
  destination: string;
  kind: 'topic' | 'shared' | 'queue' | 'user';
  /** What it is to, whatever the protocol: the topic filter in MQTT form, the queue's or the mailbox's name. */
  key: string;
  /** A shared subscription's group. */
  group?: string;
  /** MQTT: the QoS granted. */
  qos?: 0 | 1 | 2;
  /** How deliveries are acknowledged: STOMP's ack mode, `client` for the JSON WebSocket's mailbox, `auto` when nothing is awaited. */
  ack?: string;
  /** Messages of this subscription sent and not yet acknowledged, and waiting for the client's window. */
  unacked?: number;
  held?: number;
}

/** The bytes a connection moved, read from its socket (headers and framing included), and whether it is TLS. */
export interface WireFigures {
  bytesIn: number;
  bytesOut: number;
  tls: boolean;
}

/** A session in detail (the console's client page). */
export interface SessionDetail {
  subscriptions: SubscriptionInfo[];
  /** Sent and not yet acknowledged: messages, and the bytes they pin (DeliveryBudget). */
  inflight: { messages: number; bytes: number };
  /** Waiting for the client's window to open. */
  held: { messages: number; bytes: number };
  wire: WireFigures;
  credential: Credential['kind'];
  /** The protocol's version as negotiated (`1.2`, `5`); MQTT's client id. */
  version?: string;
  clientId?: string;
}

export interface Session extends SessionInfo {
  /** Subscriptions held and messages sent but not yet acknowledged, now (the console's Clients). */
  stats(): { subscriptions: number; unacked: number };
  /** The session in detail, now (the console's client page); cheap: it reads what the session holds. */
  describe(): SessionDetail;
  /** Tells the client why in its protocol's words, then closes the connection. */
  close(reason: CloseReason): void;
}

let sessionCounter = 0;

/**
 * A new session id, unique in this process and, by the process id, among the nodes on one host:
 * the protocol's prefix (`stomp`, `json`, `mqtt`), the process id and a
 * counter, both in base 36 (`stomp-1k3-2f`).
 */
export function newSessionId(protocolPrefix: string): string {
  return `${protocolPrefix}-${process.pid.toString(36)}-${(++sessionCounter).toString(36)}`;
}

export const TOKEN_DEATH: Record<'expired' | 'revoked', CloseReason> = {
  expired: { code: 'token_expired', message: 'token expired' },
  revoked: { code: 'token_revoked', message: 'token revoked' },
};

/** Why a session ends when its credential dies, in words that fit how it logged in. */
export function deathReason(principal: Principal, reason: 'expired' | 'revoked'): CloseReason {
  const kind = principal.credential.kind;
  if (reason === 'revoked' && (kind === 'password' || kind === 'certificate')) {
    return { code: 'token_revoked', message: `an administrator revoked the logins of "${principal.name}"; connect again with valid credentials` };
  }
  return TOKEN_DEATH[reason];
}

/** WebSocket close code for a server-ended session: 1001 going away, 4401/4403 dead token, 1008 policy. */
export function wsCloseCode(reason: CloseReason): number {
  switch (reason.code) {
    case 'shutdown':
      return 1001;
    case 'token_expired':
      return 4401;
    case 'token_revoked':
      return 4403;
    default:
      return 1008;
  }
}

/** Told of every session that opens or closes on this node (cluster presence, webhooks). */
export interface SessionObserver {
  added(session: Session): void;
  /** `reason`: why it ended, in words (`client disconnected`, `token expired`, `connection closed`, …). */
  removed(session: Session, reason: string): void;
}

/** The sessions logged in with one login token, watched as one (see SessionRegistry.add). */
interface TokenGroup {
  readonly sessions: Set<Session>;
  unwatch: () => void;
}

export class SessionRegistry {
  private readonly byId = new Map<string, Session>();
  private readonly observers: SessionObserver[] = [];
  private readonly byUser = new Map<string, Set<Session>>();
  /** How to stop watching the credential of a session not logged in with a login token. */
  private readonly unwatch = new Map<string, () => void>();
  /**
   * Sessions by the hash of the login token they presented: many connections
   * share a token (a user's devices, a reconnect storm), and the token is
   * watched once for all of them rather than with a callback per session.
   */
  private readonly byToken = new Map<string, TokenGroup>();

  constructor(
    private readonly auth: Auth,
    private readonly metrics: Metrics,
  ) {}

  observe(observer: SessionObserver): void {
    this.observers.push(observer);
  }

  add(session: Session): void {
    this.byId.set(session.id, session);
    for (const o of this.observers) o.added(session);
    let set = this.byUser.get(session.principal.userId);
    if (!set) this.byUser.set(session.principal.userId, (set = new Set()));
    set.add(session);
    this.metrics.connectionsOf[session.protocol].inc();
    const credential = session.principal.credential;
    if (credential.kind === 'token') return this.watchToken(credential.hash, session);
    this.unwatch.set(
      session.id,
      this.auth.watch(session.principal, (reason) => session.close(deathReason(session.principal, reason))),
    );
  }

  private watchToken(hash: string, session: Session): void {
    let group = this.byToken.get(hash);
    if (!group) {
      const g: TokenGroup = { sessions: new Set(), unwatch: () => undefined };
      g.unwatch = this.auth.watch(session.principal, (reason) => {
        // The token died: a session that logs in with it from now on is another group (and refused, or watched again).
        if (this.byToken.get(hash) === g) this.byToken.delete(hash);
        for (const s of [...g.sessions]) s.close(deathReason(s.principal, reason));
      });
      this.byToken.set(hash, (group = g));
    }
    group.sessions.add(session);
  }

  /** The session ended; `reason` says why in words (the protocol knows: a DISCONNECT, an error, a dead token). */
  remove(session: Session, reason = 'connection closed'): void {
    if (this.byId.get(session.id) !== session) return;
    this.byId.delete(session.id);
    for (const o of this.observers) o.removed(session, reason);
    const set = this.byUser.get(session.principal.userId);
    set?.delete(session);
    if (set?.size === 0) this.byUser.delete(session.principal.userId);
    this.metrics.connectionsOf[session.protocol].dec();
    const credential = session.principal.credential;
    if (credential.kind === 'token') {
      const group = this.byToken.get(credential.hash);
      if (group?.sessions.delete(session) && group.sessions.size === 0) {
        this.byToken.delete(credential.hash);
        group.unwatch();
      }
      return;
    }
    this.unwatch.get(session.id)?.();
    this.unwatch.delete(session.id);
  }

  get(id: string): Session | undefined {
    return this.byId.get(id);
  }

  ofUser(userId: string): ReadonlySet<Session> {
    return this.byUser.get(userId) ?? EMPTY;
  }

  all(): IterableIterator<Session> {
    return this.byId.values();
  }

  get size(): number {
    return this.byId.size;
  }

  /** Closes every session (shutdown). Each session removes itself as it closes. */
  closeAll(reason: CloseReason): void {
    for (const s of [...this.byId.values()]) s.close(reason);
  }
}

const EMPTY: ReadonlySet<Session> = new Set();
