/**
 * Accepting connections through a proxy that speaks the PROXY protocol
 * (`proxyProtocol`, on the STOMP and MQTT TCP listeners and their TLS
 * twins): only peers in `trustedProxies` may connect at all; each must
 * send a whole header (see proxy-protocol.ts) within a few seconds and a
 * few hundred bytes, and the client address in it becomes the connection's
 * address everywhere (admission, sessions, logs, presence). On a TLS
 * listener the header comes before the TLS handshake, as HAProxy sends it
 * in `mode tcp` with `send-proxy`.
 *
 * The HTTP and HTTPS ports do not take the PROXY protocol: behind a proxy
 * they take the client address from X-Forwarded-For (`trustProxy`).
 */
import type { Socket } from 'node:net';
import { ConfigError, type Config } from '../config.js';
import { AddressRanges } from './ip.js';
import { parseProxyHeader, PROXY_HEADER_MAX_BYTES } from './proxy-protocol.js';

/** The longest a proxy may take to send its header (less when connectTimeoutSeconds is shorter). */
export const PROXY_HEADER_SECONDS = 5;

/**
 * A header read, or why not. `silent`: the peer closed without sending a
 * byte (a balancer's bare TCP health check), which is no refusal to count.
 */
export type ProxyOutcome = { ok: true; address: string } | { ok: false; reason: string; silent?: boolean };

export class ProxyProtocol {
  private constructor(
    private readonly trusted: AddressRanges,
    /** How long a header may take, in milliseconds. */
    readonly timeoutMs: number,
  ) {}

  /**
   * The PROXY protocol as configured, or undefined when `proxyProtocol` is
   * off. Throws ConfigError for a `trustedProxies` entry that is not an
   * address or range (checked even when off), or when it is on with
   * nobody trusted.
   */
  static fromConfig(config: Pick<Config, 'proxyProtocol' | 'trustedProxies' | 'connectTimeoutSeconds'>): ProxyProtocol | undefined {
    let trusted: AddressRanges;
    try {
      trusted = AddressRanges.parse(config.trustedProxies);
    } catch (err) {
      throw new ConfigError(`trustedProxies: ${(err as Error).message}`);
    }
    if (!config.proxyProtocol) return undefined;
    if (trusted.size === 0) {
      throw new ConfigError(
        'proxyProtocol is on but trustedProxies is empty: list the addresses or CIDR ranges of the proxies that send the PROXY header (e.g. trustedProxies=10.0.0.5,10.1.0.0/16)',
      );
    }
    return new ProxyProtocol(trusted, Math.min(PROXY_HEADER_SECONDS, config.connectTimeoutSeconds) * 1000);
  }

  /** Whether a peer may send a PROXY header (anyone else is refused). */
  trusts(address: string | undefined): boolean {
    return this.trusted.includes(address);
  }

  /**
   * Reads the header off a new connection, then calls `done` once: with the
   * client address (the header's source, or the peer's own for a LOCAL or
   * UNKNOWN header), the socket paused and whatever followed the header put
   * back to be read again; or with why the header was refused (malformed,
   * too long, not whole in time, or the connection closed first), after
   * which the caller closes the connection. At most PROXY_HEADER_MAX_BYTES
   * are held, and each chunk is looked at once.
   */
  read(socket: Socket, done: (outcome: ProxyOutcome) => void): void {
    let held: Buffer | undefined;
    let finished = false;
    const finish = (outcome: ProxyOutcome): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      done(outcome);
    };
    const timer = setTimeout(() => finish({ ok: false, reason: `no whole PROXY protocol header within ${this.timeoutMs / 1000} s of connecting` }), this.timeoutMs);
    timer.unref();
    const onClose = (): void => finish({ ok: false, reason: 'the connection closed before its PROXY protocol header was whole', silent: held === undefined });
    const onData = (chunk: Buffer): void => {
      const bytes = held ? Buffer.concat([held, chunk]) : chunk;
      const header = parseProxyHeader(bytes);
      if (header.kind === 'incomplete') {
        // Whatever is incomplete is shorter than the longest header: a copy of at most that many bytes.
        held = Buffer.from(bytes.subarray(0, PROXY_HEADER_MAX_BYTES));
        return;
      }
      socket.pause();
      if (header.kind === 'invalid') return finish({ ok: false, reason: header.reason });
      if (bytes.length > header.length) socket.unshift(bytes.subarray(header.length));
      finish({ ok: true, address: header.source?.address ?? socket.remoteAddress ?? 'unknown' });
    };
    socket.on('error', () => socket.destroy());
    socket.on('data', onData);
    socket.once('close', onClose);
  }
}
