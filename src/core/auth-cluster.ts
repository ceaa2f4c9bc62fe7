/**
 * Auth in cluster mode: a revocation or user change made on one node is
 * applied on every node at once (`cred`), and failed logins and token
 * presentations are counted cluster-wide, so that spreading guesses over
 * the nodes gains nothing.
 */
import type { Auth, CredentialChange } from './auth.js';
import type { ClusterControl } from './cluster-link.js';

export interface AuthLimits {
  /** Failed password logins allowed per name+address pair within the window (the name alone is slowed past it). */
  loginLimit: number;
  /** Failed token presentations per address in the window (tokenFailuresPerAddress). */
  tokenFailureLimit: number;
  loginWindowMs: number;
}

export function joinClusterAuth(auth: Auth, cluster: ClusterControl, limits: AuthLimits): void {
  auth.onCredentialChange = (change) => cluster.broadcast('cred', change);
  cluster.on<CredentialChange>('cred', (change) => auth.applyRemoteChange(change));
  const { loginLimit, tokenFailureLimit, loginWindowMs } = limits;
  auth.useSharedFailureCounters(
    cluster.windowCounter('fail:name', loginLimit, loginWindowMs),
    cluster.windowCounter('fail:pair', loginLimit, loginWindowMs),
    cluster.windowCounter('fail:token', tokenFailureLimit, loginWindowMs),
  );
}
