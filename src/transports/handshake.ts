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

/** Shown for a client that names itself neither way: what it did not send, so an operator knows what to ask for. */
export const UNNAMED_DEVICE = 'unnamed (no ?device= or User-Agent)';

/**
 * What the client calls its device: `?device=` as given; else its
 * User-Agent, a browser's shortened to its name, version and system
 * ("Chrome 131 on Linux") and another program's to its first product
 * ("okhttp/4.12.0"); else UNNAMED_DEVICE. At most 200 characters.
 */
export function deviceOf(req: IncomingMessage, url: URL): string {
  const named = url.searchParams.get('device');
  if (named) return named.slice(0, 200);
  const ua = req.headers['user-agent'];
  return ua ? describeUserAgent(ua).slice(0, 200) : UNNAMED_DEVICE;
}

const BROWSERS: [RegExp, string][] = [
  [/\bEdg(?:e|A|iOS)?\/(\d+)/, 'Edge'],
  [/\bOPR\/(\d+)/, 'Opera'],
  [/\bFirefox\/(\d+)/, 'Firefox'],
  [/\bHeadlessChrome\/(\d+)/, 'Headless Chrome'],
  [/\b(?:Chrome|CriOS)\/(\d+)/, 'Chrome'],
  [/\bVersion\/(\d+)[.\d]* (?:Mobile\/\S+ )?Safari\//, 'Safari'],
];
const SYSTEMS: [RegExp, string][] = [
  [/Android/, 'Android'],
  [/iPhone|iPad|iPod/, 'iOS'],
  [/CrOS/, 'ChromeOS'],
  [/Windows/, 'Windows'],
  [/Mac OS X|Macintosh/, 'macOS'],
  [/Linux|X11/, 'Linux'],
];

/** "Chrome 131 on Linux" for a browser; the first product token ("okhttp/4.12.0") for anything else. */
export function describeUserAgent(ua: string): string {
  for (const [re, name] of BROWSERS) {
    const m = re.exec(ua);
    if (!m) continue;
    const system = SYSTEMS.find(([sre]) => sre.test(ua))?.[1];
    return `${name} ${m[1]}${system ? ' on ' + system : ''}`;
  }
  return ua.trim().split(/\s+/)[0] || UNNAMED_DEVICE;
}

/**
 * The answer to a WebSocket handshake whose token was refused, the same on
 * every endpoint: 403 for a disabled user, 429 for too many failures from
 * the address, else 401; an expired token tells the person to log in again.
 */
export function upgradeRefusalFor(err: AuthError): UpgradeRefusal {
  const status = err.code === 'user_disabled' ? 403 : err.code === 'rate_limited' ? 429 : err.code === 'unavailable' ? 503 : 401;
  return new UpgradeRefusal(status, err.code === 'token_expired' ? 'token expired; log in again' : err.message);
}
