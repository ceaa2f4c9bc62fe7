/**
 * What every front end reads off an HTTP request or WebSocket handshake:
 * the token, the client's address and its device; and how a refused token
 * is answered. Shared here so protocols and HTTP routes read them the same
 * way, without importing each other.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { AuthError } from '../core/auth.js';
import { UpgradeRefusal } from './listeners.js';

/** Token from `X-Auth-Token`, `Authorization: Bearer …` or the `__token` query parameter, in that order. */
export function tokenFrom(headers: IncomingHttpHeaders, query: URLSearchParams): string | undefined {
  const header = headers['x-auth-token'];
  if (typeof header === 'string' && header !== '') return header.trim();
  const authz = headers.authorization;
  if (typeof authz === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
    if (m) return m[1];
  }
  return query.get('__token') ?? undefined;
}

export { clientAddress } from './client-address.js';

/** What the client calls its device: `?device=`, else its User-Agent (at most 200 characters). */
export function deviceOf(req: IncomingMessage, url: URL): string {
  return (url.searchParams.get('device') ?? req.headers['user-agent'] ?? 'unknown').slice(0, 200);
}

/**
 * The answer to a WebSocket handshake whose token was refused, the same on
 * every endpoint: 403 for a disabled user, 429 for too many failures from
 * the address, else 401; an expired token tells the person to log in again.
 */
export function upgradeRefusalFor(err: AuthError): UpgradeRefusal {
  const status = err.code === 'user_disabled' ? 403 : err.code === 'rate_limited' ? 429 : 401;
  return new UpgradeRefusal(status, err.code === 'token_expired' ? 'token expired; log in again' : err.message);
}
