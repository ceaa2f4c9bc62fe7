/**
 * Who a protocol connection is, with the connect hook in the loop. Every
 * protocol (STOMP, MQTT, the JSON WebSocket) calls `connectLogin` with what
 * the client presented and its own way of checking Herald's credentials
 * (`own`: a token, a user name and password, an app's user token):
 *
 * - no hook: `own` decides, as always;
 * - `authHookMode: always`: the hook decides every connection;
 * - `fallback` (the default): `own` first; when it does not know the
 *   credentials (an unknown token, a wrong or unknown user name or
 *   password), the hook decides. Refusals of another kind (a disabled user,
 *   an expired token, a rate limit) stand: the hook is not a way around them.
 *
 * With a hook, `own` does not count a refused token against the client's
 * address (the application may know it); a refusal by the hook does, so an
 * address guessing credentials still meets tokenFailuresPerAddress, and is
 * refused before the hook is asked again.
 */
import type { Auth } from './auth.js';
import type { ConnectAttempt } from './auth-hook.js';
import { AuthError, type Principal } from './principal.js';

export type { ConnectAttempt } from './auth-hook.js';

/**
 * `own(address)`: Herald's own check; `address` is the one to count refused
 * tokens against, or undefined when the hook will count instead.
 */
export async function connectLogin(auth: Auth, attempt: ConnectAttempt, own: (address: string | undefined) => Promise<Principal>): Promise<Principal> {
  const hook = auth.hook;
  if (!hook) return own(attempt.remoteAddress);
  if (auth.hookMode !== 'always') {
    try {
      return await own(undefined);
    } catch (err) {
      if (!(err instanceof AuthError) || (err.code !== 'invalid_token' && err.code !== 'bad_credentials')) throw err;
      if (!attempt.username && !attempt.password && !attempt.certificateSubject) throw err;
    }
  }
  const address = attempt.remoteAddress;
  const wait = await auth.limits.tokenWait(address);
  if (wait > 0) throw new AuthError('rate_limited', `too many refused logins from this address; try again in ${Math.ceil(wait / 1000)} s`, Math.ceil(wait / 1000));
  try {
    return await hook.decide(attempt);
  } catch (err) {
    if (err instanceof AuthError && err.code === 'bad_credentials') await auth.limits.tokenFailed(address);
    throw err;
  }
}
