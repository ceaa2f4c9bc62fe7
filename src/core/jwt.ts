/**
 * JWTs from an outside issuer: HS256 with `jwtSecret`, RS256 with
 * `jwtPublicKey` (PEM text or a file), optionally bound to `jwtIssuer` and
 * `jwtAudience`. A JWT whose `sub` names a Herald user (by id or name) takes
 * that user's role and state, and dies with that user's revoked tokens;
 * otherwise `sub`, `name` and `role` claims describe an outside user.
 */
import { existsSync, readFileSync } from 'node:fs';
import { errors as joseErrors, importSPKI, jwtVerify, type CryptoKey, type JWTPayload } from 'jose';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Store } from '../store/store.js';
import { AuthError, hashToken, isRole, type Credential, type Principal } from './principal.js';

/** The keys JWTs may be signed with; at least one is set. */
export interface JwtKeys {
  hs?: Uint8Array;
  rs?: CryptoKey;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Three base64url parts: checked as a JWT (when keys are configured), not looked up as a login token. */
export function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}

/** The configured keys, or undefined when JWTs are not accepted. */
export async function loadJwtKeys(config: Config): Promise<JwtKeys | undefined> {
  const keys: JwtKeys = {};
  if (config.jwtSecret) keys.hs = new TextEncoder().encode(config.jwtSecret);
  if (config.jwtPublicKey) {
    const pem = config.jwtPublicKey.includes('-----BEGIN')
      ? config.jwtPublicKey
      : existsSync(config.jwtPublicKey)
        ? readFileSync(config.jwtPublicKey, 'utf8')
        : '';
    if (!pem) throw new Error(`jwtPublicKey is neither PEM text nor a readable file: ${config.jwtPublicKey}`);
    keys.rs = await importSPKI(pem, 'RS256');
  }
  return keys.hs || keys.rs ? keys : undefined;
}

/** Verifies a JWT and resolves it to a principal; refusals are AuthErrors that say why. */
export async function verifyJwt(token: string, keys: JwtKeys, config: Config, clock: Clock, store: Store): Promise<Principal> {
  let payload: JWTPayload;
  try {
    const verified = await jwtVerify(
      token,
      async (header) => {
        if (header.alg === 'HS256' && keys.hs) return keys.hs;
        if (header.alg === 'RS256' && keys.rs) return keys.rs;
        throw new AuthError('invalid_token', `JWT algorithm ${String(header.alg)} is not accepted here`);
      },
      {
        algorithms: ['HS256', 'RS256'],
        currentDate: new Date(clock.now()),
        ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
        ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
      },
    );
    payload = verified.payload;
  } catch (err) {
    if (err instanceof AuthError) throw err;
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
