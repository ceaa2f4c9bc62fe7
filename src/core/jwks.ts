/**
 * The JSON Web Key Set of `jwtJwksUrl`, fetched over http(s) with Node's
 * fetch (FETCH_TIMEOUT_MS, at most MAX_JWKS_BYTES) and kept in memory:
 *
 * - at start (start-up waits for the first answer, but does not fail when
 *   there is none: tokens needing the set are refused, saying why, until a
 *   retry gets it);
 * - again every `jwtJwksRefreshSeconds`, and after a failure with back-off
 *   (1 s, doubled, at most a minute); a failed fetch never drops the keys
 *   already held;
 * - again when a token names a `kid` the set does not hold, at most once per
 *   UNKNOWN_KID_INTERVAL_MS whatever the number of such tokens (a flood of
 *   made-up kids costs the issuer one request a minute);
 * - again on reload (SIGHUP, POST /api/admin/reload).
 *
 * Only signing keys Herald verifies are kept: RSA (RS256, at least 2048
 * bits), EC P-256 (ES256) and Ed25519 (EdDSA), each usable with exactly
 * that algorithm; a key whose `alg` says otherwise, whose `use` is not
 * `sig`, or that is symmetric (`kty` oct) is skipped.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { redactUrl } from '../bus/redis-bus.js';
import type { Logger } from '../log.js';

/** The public-key algorithms a JWT may be signed with. */
export type PublicKeyAlg = 'RS256' | 'ES256' | 'EdDSA';
export const PUBLIC_KEY_ALGS: readonly PublicKeyAlg[] = ['RS256', 'ES256', 'EdDSA'];

export interface VerifyKey {
  key: KeyObject;
  /** The one algorithm this key verifies. */
  alg: PublicKeyAlg;
  kid: string | undefined;
}

export const FETCH_TIMEOUT_MS = 5000;
export const MAX_JWKS_BYTES = 1 << 20;
export const UNKNOWN_KID_INTERVAL_MS = 60_000;
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;

/** The algorithm a public key is used with, or why it cannot be. */
export function algOfKey(key: KeyObject): PublicKeyAlg | string {
  switch (key.asymmetricKeyType) {
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      return bits >= 2048 ? 'RS256' : `an RSA key of ${bits} bits is too short (RS256 needs at least 2048)`;
    }
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === 'prime256v1' ? 'ES256' : `an EC key on curve ${curve ?? '?'} is not accepted (ES256 needs P-256)`;
    }
    case 'ed25519':
      return 'EdDSA';
    default:
      return `a ${key.asymmetricKeyType ?? 'symmetric'} key is not accepted (RSA, EC P-256 or Ed25519)`;
  }
}

/** A key of the set as Herald uses it, or why it is skipped. */
export function keyOfJwk(raw: unknown): VerifyKey | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a JSON object';
  const jwk = raw as Record<string, unknown>;
  const kid = typeof jwk['kid'] === 'string' ? jwk['kid'] : undefined;
  if (jwk['use'] !== undefined && jwk['use'] !== 'sig') return `use is ${JSON.stringify(jwk['use'])}, not "sig"`;
  const ops = jwk['key_ops'];
  if (ops !== undefined && !(Array.isArray(ops) && ops.includes('verify'))) return 'key_ops does not include "verify"';
  // Only the public members are read: a set that publishes a private part does not make Herald hold it.
  let pub: JsonWebKey;
  let alg: PublicKeyAlg;
  const fixedAlg = jwk['alg'];
  switch (jwk['kty']) {
    case 'RSA':
      pub = { kty: 'RSA', n: jwk['n'] as string, e: jwk['e'] as string };
      alg = 'RS256';
      break;
    case 'EC':
      if (jwk['crv'] !== 'P-256') return `EC curve ${String(jwk['crv'])} is not accepted (ES256 needs P-256)`;
      pub = { kty: 'EC', crv: 'P-256', x: jwk['x'] as string, y: jwk['y'] as string };
      alg = 'ES256';
      break;
    case 'OKP':
      if (jwk['crv'] !== 'Ed25519') return `OKP curve ${String(jwk['crv'])} is not accepted (EdDSA needs Ed25519)`;
      pub = { kty: 'OKP', crv: 'Ed25519', x: jwk['x'] as string };
      alg = 'EdDSA';
      break;
    case 'oct':
      return 'symmetric keys (kty "oct") are never taken from a key set';
    default:
      return `kty ${JSON.stringify(jwk['kty'])} is not accepted (RSA, EC or OKP)`;
  }
  if (fixedAlg !== undefined && fixedAlg !== alg && !(alg === 'EdDSA' && fixedAlg === 'Ed25519')) {
    return `alg ${JSON.stringify(fixedAlg)} is not accepted for a key of kty ${String(jwk['kty'])} (only ${alg})`;
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pub, format: 'jwk' });
  } catch (err) {
    return `not a usable key: ${(err as Error).message}`;
  }
  const checked = algOfKey(key);
  if (checked !== alg) return checked;
  return { key, alg, kid };
}

/** Why a fetch failed, in words. */
function describeFetchError(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${FETCH_TIMEOUT_MS / 1000} s`;
  return e.cause?.code ?? e.cause?.message ?? e.message;
}

/** The body, refused past MAX_JWKS_BYTES (declared or sent). */
async function readCapped(res: Response): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? 'NaN');
  if (declared > MAX_JWKS_BYTES) {
    await res.body?.cancel();
    throw new Error(`the answer is ${declared} bytes, over the ${MAX_JWKS_BYTES}-byte limit for a key set`);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_JWKS_BYTES) {
      await reader.cancel();
      throw new Error(`the answer is over the ${MAX_JWKS_BYTES}-byte limit for a key set`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export type JwksFetch = { ok: true; keys: number } | { ok: false; reason: string; keys: number };

export class JwksCache {
  private keys: VerifyKey[] = [];
  private fetchedAt: number | undefined;
  private lastError: string | undefined;
  private inflight: Promise<JwksFetch> | undefined;
  /** When a token's unknown kid last caused a fetch (performance.now()). */
  private lastKidFetch = -Infinity;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The URL as logs and answers show it (a password in it is hidden). */
  readonly shownUrl: string;

  constructor(
    readonly url: string,
    private readonly refreshMs: number,
    private readonly log: Logger,
  ) {
    this.shownUrl = redactUrl(url);
  }

  /** The first fetch; its failure is logged, retried, and not thrown. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.refresh('start');
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Whether a key set was ever fetched. */
  get loaded(): boolean {
    return this.fetchedAt !== undefined;
  }

  get keyCount(): number {
    return this.keys.length;
  }

  /** Why the set is not held, for a refused token: the last fetch's failure. */
  get problem(): string {
    return this.lastError ?? 'not fetched yet';
  }

  get fetchedAtText(): string {
    return this.fetchedAt === undefined ? 'never' : new Date(this.fetchedAt).toISOString();
  }

  byKid(kid: string): VerifyKey | undefined {
    return this.keys.find((k) => k.kid === kid);
  }

  /** The keys for an algorithm (a token without a kid may use one only when it is the only one). */
  forAlg(alg: PublicKeyAlg): VerifyKey[] {
    return this.keys.filter((k) => k.alg === alg);
  }

  /** Fetches now, or joins the fetch under way. */
  refresh(why: 'start' | 'schedule' | 'unknown kid' | 'reload'): Promise<JwksFetch> {
    this.inflight ??= this.fetchOnce(why).finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /**
   * A token named a kid the set does not hold (or the set is not held):
   * fetch again, unless a token did so less than UNKNOWN_KID_INTERVAL_MS ago.
   */
  async refreshForUnknownKid(): Promise<void> {
    if (this.inflight) {
      await this.inflight;
      return;
    }
    const now = performance.now();
    if (now - this.lastKidFetch < UNKNOWN_KID_INTERVAL_MS) return;
    this.lastKidFetch = now;
    await this.refresh('unknown kid');
  }

  private async fetchOnce(why: string): Promise<JwksFetch> {
    let result: JwksFetch;
    try {
      const found = await this.download();
      this.keys = found.keys;
      this.fetchedAt = Date.now();
      this.lastError = undefined;
      this.failures = 0;
      const level = why === 'schedule' ? 'debug' : 'info';
      this.log[level]({ url: this.shownUrl, keys: found.keys.map((k) => `${k.kid ?? '(no kid)'} ${k.alg}`), skipped: found.skipped.length > 0 ? found.skipped : undefined, why }, 'JWKS fetched');
      result = { ok: true, keys: found.keys.length };
    } catch (err) {
      const reason = `JWKS at ${this.shownUrl} could not be fetched: ${(err as Error).message}`;
      this.lastError = reason;
      this.failures++;
      if (this.loaded) this.log.warn({ why, keysKept: this.keys.length }, `${reason}; the keys fetched at ${this.fetchedAtText} stay in use`);
      else this.log.error({ why }, `${reason}; JWTs signed by its keys are refused until it is fetched`);
      result = { ok: false, reason, keys: this.keys.length };
    }
    this.schedule();
    return result;
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const delay = this.failures === 0 ? this.refreshMs : Math.min(RETRY_FIRST_MS * 2 ** (this.failures - 1), RETRY_MAX_MS, this.refreshMs);
    this.timer = setTimeout(() => void this.refresh('schedule'), delay);
    this.timer.unref();
  }

  private async download(): Promise<{ keys: VerifyKey[]; skipped: string[] }> {
    let text: string;
    try {
      const res = await fetch(this.url, {
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        headers: { accept: 'application/jwk-set+json, application/json' },
      });
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      text = await readCapped(res);
    } catch (err) {
      throw new Error(describeFetchError(err));
    }
    let set: unknown;
    try {
      set = JSON.parse(text);
    } catch {
      throw new Error('the answer is not JSON');
    }
    const list = (set as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(list)) throw new Error('the answer is not a key set (a JSON object with a "keys" array)');
    const keys: VerifyKey[] = [];
    const skipped: string[] = [];
    for (const [i, raw] of list.entries()) {
      const k = keyOfJwk(raw);
      if (typeof k === 'string') {
        const kid = (raw as { kid?: unknown } | null)?.kid;
        skipped.push(`${typeof kid === 'string' ? `kid ${kid}` : `key ${i + 1}`}: ${k}`);
      } else keys.push(k);
    }
    if (keys.length === 0) {
      throw new Error(`it holds no key Herald can use (RSA, EC P-256 or Ed25519 signing keys)${skipped.length ? `: ${skipped.join('; ')}` : ''}`);
    }
    return { keys, skipped };
  }
}
