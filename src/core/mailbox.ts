/** Who a `/user/{who}/…` destination names. */
import type { Store } from '../store/store.js';
import { hashToken, type Auth, type Principal } from './auth.js';

/** Whether `who` (a user id, a user name, or the caller's own token) is the caller. */
export function isSelf(principal: Principal, who: string): boolean {
  if (who === principal.userId || who === principal.name) return true;
  return principal.credential.kind === 'token' && hashToken(who) === principal.credential.hash;
}

/**
 * Resolves `who` to a user id: a Herald user id, a user name, or a live token
 * (the media-service notifications client addresses its mailboxes by token).
 * Anything else is taken as an external user id (a JWT `sub`), since such
 * users have no row in the store.
 */
export async function resolveUserId(store: Store, auth: Auth, who: string): Promise<string> {
  const byId = await store.getUserById(who);
  if (byId) return byId.id;
  const byName = await store.getUserByName(who);
  if (byName) return byName.id;
  if (/^[A-Za-z0-9_-]{22}$/.test(who)) {
    try {
      return (await auth.authenticate(who, { renew: false })).userId;
    } catch {
      // not a live token: fall through
    }
  }
  return who;
}
