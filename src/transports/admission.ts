/**
 * What a connection may do before it authenticates, the same for every
 * listener and protocol:
 *
 * - each client address may hold `maxUnauthenticatedPerAddress` connections
 *   that have not authenticated (an HTTP connection counts while it is open;
 *   one upgraded to a WebSocket counts until its session authenticates);
 * - a connection has `connectTimeoutSeconds` to authenticate;
 * - it may send `maxPreAuthBytes` before it does.
 *
 * A connection over its time or byte allowance is told why by its protocol
 * (`onLimit`, an ERROR frame or a CONNACK) and, if still open two seconds
 * later, destroyed. The protocol calls `authenticated()` once the client
 * proved who it is; from then on the session's own limits apply.
 */
import type { Socket } from 'node:net';
import type { ListenerFull } from './listener-slots.js';

export type { ListenerFull } from './listener-slots.js';

export interface Admission {
  /**
   * The client's address, the one every protocol records (sessions, login
   * limits, logs, presence): the peer of the socket; on a listener behind
   * the PROXY protocol, the source in its header; on a WebSocket behind
   * `trustProxy`, the first X-Forwarded-For address.
   */
  readonly remoteAddress: string;
  /** The connection authenticated: it no longer counts against its address, and its clock and byte count stop. */
  authenticated(): void;
  /** Set by the protocol: ends the connection with `reason` in the protocol's own words. */
  onLimit: ((reason: string) => void) | undefined;
  /**
   * Set when the connection's listener was full as it arrived: the protocol
   * answers its CONNECT (or, without one, its start) with this refusal and
   * closes (see listener-slots.ts).
   */
  listenerFull: ListenerFull | undefined;
}

/** Why a connection was refused or cut before it authenticated (the metric's reason label). */
export type RefusalKind = 'address_limit' | 'total_limit' | 'connect_timeout' | 'preauth_bytes' | 'proxy_untrusted' | 'proxy_header';

export interface AdmissionLimits {
  maxUnauthenticatedPerAddress: number;
  maxUnauthenticatedConnections: number;
  connectTimeoutSeconds: number;
  maxPreAuthBytes: number;
}

class SocketAdmission implements Admission {
  onLimit: ((reason: string) => void) | undefined;
  listenerFull: ListenerFull | undefined;
  private counted = true;
  private timer: NodeJS.Timeout | undefined;
  private bytesAtStart = 0;
  private readonly onData = (): void => this.checkBytes();

  constructor(
    private readonly gate: AdmissionGate,
    readonly address: string,
    readonly socket: Socket,
    public remoteAddress: string,
  ) {
    socket.on('close', () => this.release()); // a socket closes once; `on` spares `once`'s wrapper
  }

  /** Starts the authentication clock and byte count (at accept for TCP, at the upgrade for a WebSocket). */
  start(): void {
    if (!this.counted || this.timer) return;
    this.bytesAtStart = this.socket.bytesRead;
    const limits = this.gate.limits;
    this.timer = setTimeout(
      () => this.exceed('connect_timeout', `not authenticated within ${limits.connectTimeoutSeconds} s of connecting (connectTimeoutSeconds): send CONNECT with credentials first`),
      limits.connectTimeoutSeconds * 1000,
    );
    this.timer.unref();
    // Checked before the protocol's own handler reads the chunk (this listener is added first).
    this.socket.prependListener('data', this.onData);
  }

  private checkBytes(): void {
    const read = this.socket.bytesRead - this.bytesAtStart;
    const max = this.gate.limits.maxPreAuthBytes;
    if (read > max) this.exceed('preauth_bytes', `${read} bytes received before authentication; at most ${max} are accepted (maxPreAuthBytes)`);
  }

  private exceed(kind: RefusalKind, reason: string): void {
    if (!this.counted) return;
    this.stop();
    this.gate.refused(kind, reason);
    const socket = this.socket;
    if (this.onLimit) {
      try {
        this.onLimit(reason);
      } finally {
        setTimeout(() => socket.destroy(), 2000).unref();
      }
    } else {
      socket.destroy();
    }
  }

  private stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.socket.off('data', this.onData);
  }

  authenticated(): void {
    this.stop();
    this.release();
  }

  private release(): void {
    this.stop();
    if (!this.counted) return;
    this.counted = false;
    this.gate.release(this.address);
  }
}

/**
 * The key an address is counted under: an IPv6 address by its /64 prefix
 * (one host is usually given a whole /64, so counting single addresses would
 * let it open 2^64 times the limit); IPv4, and IPv4 mapped into IPv6, as is.
 */
export function addressKey(address: string): string {
  if (!address.includes(':') || address.startsWith('::ffff:')) return address;
  const [head = '', tail] = address.split('::', 2);
  const left = head ? head.split(':') : [];
  const right = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return groups.slice(0, 4).map((g) => (g.replace(/^0+(?=.)/, '') || '0').toLowerCase()).join(':') + '::/64';
}

export class AdmissionGate {
  private readonly pending = new Map<string, number>();
  private total = 0;
  private readonly bySocket = new WeakMap<Socket, SocketAdmission>();
  /** Told of every refusal (metrics). */
  onRefused: ((kind: RefusalKind, reason: string) => void) | undefined;

  constructor(readonly limits: AdmissionLimits) {}

  /** Unauthenticated connections now open from `address`. */
  count(address: string): number {
    return this.pending.get(address) ?? 0;
  }

  /**
   * Admits a new connection from `address`, or returns undefined when that
   * address already holds its share of unauthenticated connections (the
   * caller then refuses it). `start` starts the clock and the byte count at once.
   */
  admit(socket: Socket, address: string, start: boolean, countAddress = true): Admission | undefined {
    // Behind a trusted proxy every HTTP connection comes from the proxy: time and bytes are still limited.
    const key = countAddress ? addressKey(address) : '';
    if (this.total >= this.limits.maxUnauthenticatedConnections) {
      this.refused('total_limit', `the server already has ${this.total} unauthenticated connections (maxUnauthenticatedConnections)`);
      return undefined;
    }
    const n = this.pending.get(key) ?? 0;
    if (countAddress && n >= this.limits.maxUnauthenticatedPerAddress) {
      this.refused('address_limit', `address ${key} already has ${n} unauthenticated connections (maxUnauthenticatedPerAddress)`);
      return undefined;
    }
    this.pending.set(key, n + 1);
    this.total++;
    const a = new SocketAdmission(this, key, socket, address);
    this.bySocket.set(socket, a);
    if (start) a.start();
    return a;
  }

  /**
   * The admission of an HTTP connection that is being upgraded to a
   * WebSocket; its clock starts now. `remoteAddress`: the client's address
   * as the upgrade request gives it (X-Forwarded-For behind `trustProxy`).
   */
  upgraded(socket: Socket, remoteAddress: string): Admission | undefined {
    const a = this.bySocket.get(socket);
    if (!a) return undefined;
    a.remoteAddress = remoteAddress;
    a.start();
    return a;
  }

  /** @internal */
  release(address: string): void {
    this.total--;
    const n = (this.pending.get(address) ?? 1) - 1;
    if (n <= 0) this.pending.delete(address);
    else this.pending.set(address, n);
  }

  /** @internal */
  refused(kind: RefusalKind, reason: string): void {
    this.onRefused?.(kind, reason);
  }
}

/** An admission for a connection no gate watches (an HTTP connection that was not counted, in-process tests). */
export function ungated(remoteAddress: string): Admission {
  return { remoteAddress, authenticated() {}, onLimit: undefined, listenerFull: undefined };
}
