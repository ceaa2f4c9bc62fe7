/**
 * JWTs from an outside issuer: HS256 with `jwtSecret`; RS256, ES256 or
 * EdDSA with `jwtPublicKey` (an RSA, EC P-256 or Ed25519 public key, PEM
 * text or a file) and with the keys of the JWKS at `jwtJwksUrl` (jwks.ts);
 * optionally bound to `jwtIssuer` and `jwtAudience`. A JWT whose `sub` names
 * a Herald user (by id or name) takes that user's role and state, and dies
 * with that user's revoked tokens; otherwise `sub`, `name` and `role` claims
 * describe an outside user.
 *
 * Each key verifies exactly one algorithm, and the token's `alg` must be
 * that one: HS256 only ever uses `jwtSecret` (never a public key as an HMAC
 * secret, the classic confusion), and `none` is never accepted.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { Clock } from '../clock.js';
import { ConfigError, type Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { JwksCache, PUBLIC_KEY_ALGS, algOfKey, type PublicKeyAlg } from './jwks.js';
import { AuthError, hashToken, isRole, type Credential, type Principal } from './principal.js';

/** The keys JWTs may be signed with; at least one is set. */
export interface JwtKeys {
  hs?: Uint8Array;
  /** `jwtPublicKey`, with the one algorithm it verifies. */
  pem?: { key: KeyObject; alg: PublicKeyAlg };
  /** The key set of `jwtJwksUrl` (fetched once `start` is called). */
  jwks?: JwksCache;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Three base64url parts: checked as a JWT (when keys are configured), not looked up as a login token. */
export function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}

/** `jwtPublicKey`: PEM text, or the path of a PEM file; a ConfigError says what is wrong with it. */
function loadPublicKey(value: string): { key: KeyObject; alg: PublicKeyAlg } {
  const pem = value.includes('-----BEGIN') ? value : existsSync(value) ? readFileSync(value, 'utf8') : '';
  if (!pem) throw new ConfigError(`jwtPublicKey is neither PEM text nor a readable file: ${value}`);
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new ConfigError(`jwtPublicKey is not a PEM public key (or certificate) Node can read: ${(err as Error).message}`);
  }
  const alg = algOfKey(key);
  if (!(PUBLIC_KEY_ALGS as readonly string[]).includes(alg)) throw new ConfigError(`jwtPublicKey: ${alg}; use an RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) key`);
  return { key, alg: alg as PublicKeyAlg };
}

/**
 * The configured keys, or undefined when JWTs are not accepted. Nothing is
 * fetched here: the JWKS is fetched when its cache is started (Auth.start).
 */
export async function loadJwtKeys(config: Config, log: Logger): Promise<JwtKeys | undefined> {
  const keys: JwtKeys = {};
  if (config.jwtSecret) keys.hs = new TextEncoder().encode(config.jwtSecret);
  if (config.jwtPublicKey) keys.pem = loadPublicKey(config.jwtPublicKey);
  if (config.jwtJwksUrl) {
    let url: URL | undefined;
    try {
      url = new URL(config.jwtJwksUrl);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ConfigError(`jwtJwksUrl must be an http:// or https:// URL (got ${JSON.stringify(config.jwtJwksUrl)})`);
    }
    keys.jwks = new JwksCache(url.toString(), config.jwtJwksRefreshSeconds * 1000, log.child({ component: 'jwks' }));
  }
  return keys.hs || keys.pem || keys.jwks ? keys : undefined;
}

const refuse = (message: string): AuthError => new AuthError('invalid_token', message);

/**
 * The public key a token signed with `alg` (and naming `kid`, if it does)
 * is checked with: the JWKS key of that kid, else `jwtPublicKey` when it
 * verifies that algorithm, else the JWKS's only key for the algorithm (for
 * a token without a kid). A kid the set does not hold makes it fetch the
 * set again first (at most once a minute).
 */
async function publicKeyFor(keys: JwtKeys, alg: PublicKeyAlg, kid: string | undefined): Promise<KeyObject> {
  const { jwks, pem } = keys;
  const pemFits = pem?.alg === alg;
  if (jwks && kid !== undefined) {
    let found = jwks.byKid(kid);
    if (!found) {
      await jwks.refreshForUnknownKid();
      found = jwks.byKid(kid);
    }
    if (found) {
      if (found.alg !== alg) throw refuse(`JWT algorithm ${alg} does not fit key "${kid}" of the JWKS, an ${found.alg} key`);
      return found.key;
    }
  }
  if (pem && pemFits) return pem.key;
  if (jwks) {
    if (!jwks.loaded && kid === undefined) await jwks.refreshForUnknownKid();
    if (!jwks.loaded) throw refuse(`${jwks.problem}; JWTs signed by its keys are refused until it is fetched (retried with back-off)`);
    if (kid !== undefined) {
      throw refuse(`JWT key id "${kid}" is not in the JWKS at ${jwks.shownUrl} (fetched ${jwks.fetchedAtText}; an unknown key id fetches it again at most once a minute)`);
    }
    const candidates = jwks.forAlg(alg);
    if (candidates.length === 1) return candidates[0]!.key;
    if (candidates.length > 1) throw refuse(`JWT has no "kid" header and the JWKS holds ${candidates.length} ${alg} keys; the issuer must name its key`);
    if (!pem) throw refuse(`JWT algorithm ${alg} is not accepted here: the JWKS at ${jwks.shownUrl} holds no ${alg} key`);
  }
  if (pem) throw refuse(`JWT algorithm ${alg} does not fit jwtPublicKey, an ${pem.alg} key`);
  throw refuse(`JWT algorithm ${alg} is not accepted here: no jwtPublicKey or jwtJwksUrl is configured`);
}

/** What the header's `alg` says, for a refusal (undefined when the header cannot be read). */
function headerAlg(token: string): string | undefined {
  try {
    const alg = decodeProtectedHeader(token).alg;
    return typeof alg === 'string' ? alg : undefined;
  } catch {
    return undefined;
  }
}

/** Verifies a JWT and resolves it to a principal; refusals are AuthErrors that say why. */
export async function verifyJwt(token: string, keys: JwtKeys, config: Config, clock: Clock, store: Store): Promise<Principal> {
  let payload: JWTPayload;
  try {
    const verified = await jwtVerify(
      token,
      async (header) => {
        const alg = header.alg;
        if (alg === 'HS256') {
          if (keys.hs) return keys.hs;
          throw refuse('JWT algorithm HS256 is not accepted here: no jwtSecret is configured');
        }
        return publicKeyFor(keys, alg as PublicKeyAlg, typeof header.kid === 'string' ? header.kid : undefined);
      },
      {
        // Any other alg (none included) is refused before a key is looked for.
        algorithms: ['HS256', ...PUBLIC_KEY_ALGS],
        currentDate: new Date(clock.now()),
        ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
        ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
      },
    );
    payload = verified.payload;
  } catch (err) {
    if (err instanceof AuthError) throw err;
    if (err instanceof joseErrors.JOSEAlgNotAllowed) {
      throw refuse(`JWT algorithm ${headerAlg(token) ?? '(none given)'} is not accepted here (HS256, RS256, ES256 and EdDSA are, each with its own key)`);
    }
    if (err instanceof joseErrors.JWTExpired) throw new AuthError('token_expired', 'JWT expired (exp is in the past)');
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
      throw new AuthError('invalid_token', 'JWT signature does not verify');
    }
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      throw new AuthError('invalid_token', `JWT claim "${err.claim}" is not acceptable: ${err.reason}`);
    }
    throw new AuthError('invalid_token', `JWT is not valid: ${(err as Error).message}`);
  }
  if (typeof payload.sub !== 'string' || payload.sub === '') {
    throw new AuthError('invalid_token', 'JWT has no "sub" claim naming the user');
  }
  const credential: Credential = {
    kind: 'jwt',
    key: 'jwt:' + hashToken(token),
    expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : null,
  };
  // A JWT may name a Herald user (by id or name); that user's role and state win.
  const user = (await store.getUserById(payload.sub)) ?? (await store.getUserByName(payload.sub));
  if (user) {
    if (user.disabled) throw new AuthError('user_disabled', `user "${user.name}" is disabled`);
    if (user.tokensValidAfter > 0 && (typeof payload.iat !== 'number' || payload.iat * 1000 <= user.tokensValidAfter)) {
      throw new AuthError(
        'invalid_token',
        `JWT was issued ${typeof payload.iat === 'number' ? 'before' : '(no iat) before'} the tokens of user "${user.name}" were revoked at ${new Date(user.tokensValidAfter).toISOString()}; issue a new one`,
      );
    }
    return { userId: user.id, name: user.name, role: user.role, credential };
  }
  const name = typeof payload['name'] === 'string' ? payload['name'] : payload.sub;
  const role = isRole(payload['role']) ? payload['role'] : 'user';
  return { userId: payload.sub, name, role, credential };
}
