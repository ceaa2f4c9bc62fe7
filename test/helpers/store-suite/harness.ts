/** What every per-domain Store contract suite is given. */
import type { Store } from '../../../src/store/store.js';

/** A store as a suite holds it: the contract under test, and `close`. */
export type Opened<S> = S & Pick<Store, 'close'>;

/** Opens stores of one engine; `S` is the contract a suite tests (any engine's Store satisfies every S). */
export interface StoreFactory<S = Store> {
  /** A fresh, empty store. */
  open(): Promise<Opened<S>>;
  /** Reopens the same database after `close` (durability). Optional. */
  reopen?(): Promise<Opened<S>>;
}
