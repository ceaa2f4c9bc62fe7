/**
 * Node incarnations and their leases: who may hold queue claims and MQTT
 * sessions. Each start of a node is a new incarnation with its own owner id
 * (`{node}#{epoch}`) and a lease it renews; claims and sessions carry the
 * owner id. A restarted node fences its earlier incarnations at start, and a
 * live node fences one whose lease ran out. Fencing is kept in the store, so
 * a Redis restart cannot make live nodes look dead. Time is the database's
 * clock, so nodes' clocks need not agree.
 * Implemented by sqlite/leases.ts and postgres/leases.ts.
 */

export interface LeaseStore {
  /**
   * Starts an incarnation of `node` with a lease of `leaseMs`; returns its
   * owner id. Earlier incarnations of the same node are fenced (that
   * process is gone: a node name runs once); `alone` (a single node, no
   * cluster) fences every other incarnation, whatever its name.
   */
  beginIncarnation(node: string, leaseMs: number, alone?: boolean): Promise<string>;
  /** The incarnation stops cleanly: fenced at once, so what it leaves behind is free without waiting for its lease. */
  endIncarnation(owner: string): Promise<void>;
  /** Pushes the owner's lease `leaseMs` ahead; false when it was fenced (its work went to others). */
  renewLease(owner: string, leaseMs: number): Promise<boolean>;
  /** Fences every owner whose lease has run out; returns them. */
  fenceExpired(): Promise<string[]>;
  /** Owners not fenced (their lease may have run out while the store was away: only `fenceExpired` judges). */
  liveOwners(): Promise<string[]>;
}

/** The epoch of an owner id (`a#12` → 12), or undefined for an id without one. */
export function ownerEpoch(owner: string): number | undefined {
  const i = owner.lastIndexOf('#');
  const epoch = i < 0 ? NaN : Number(owner.slice(i + 1));
  return Number.isSafeInteger(epoch) ? epoch : undefined;
}

/** The node name of an owner id (`a#12` → `a`; an id without epoch is a name already). */
export function ownerNode(owner: string): string {
  const i = owner.lastIndexOf('#');
  return i < 0 ? owner : owner.slice(0, i);
}
