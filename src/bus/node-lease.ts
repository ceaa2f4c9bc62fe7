/**
 * The node's lease in the store (cluster mode): the evidence other nodes
 * need before taking its work, and that survives a Redis restart.
 *
 * - At start the node is a new incarnation (`LeaseStore.beginIncarnation`),
 *   which fences its earlier incarnations: whatever they claimed is free.
 * - Every tick it renews its lease. A renewal refused means another node
 *   fenced it (it was cut off from the store past the lease): its claims
 *   and sessions are someone else's now, so it drops what it held
 *   (`onFenced`) and goes on as a new incarnation.
 * - It judges others only after renewing without a gap for a whole lease:
 *   after a store outage every node's lease has run out, and a live node
 *   must get the time to renew before anyone takes its work.
 */
import type { Logger } from '../log.js';
import type { LeaseStore } from '../store/leases.js';
import { OutageLog } from '../core/background.js';
import { ownerEpoch, ownerNode } from '../store/leases.js';

export class NodeLease {
  private current: string;
  /** When the unbroken run of successful renewals began (local clock), or undefined after a failure. */
  private healthySince: number | undefined;
  private lastRenewal = 0;
  /** Another process runs under this node name (it fenced this one): this one holds nothing from then on. */
  private duplicate = false;
  private readonly outage: OutageLog;

  constructor(
    private readonly store: LeaseStore,
    private readonly node: string,
    /** The lease length; renewed every third of it. */
    private readonly leaseMs: number,
    owner: string,
    private readonly log: Logger,
    private readonly onFenced: (oldOwner: string, newOwner: string) => Promise<void>,
  ) {
    this.current = owner;
    this.lastRenewal = Date.now(); // begun just now
    this.outage = new OutageLog(log, 'renewing the node lease in the store');
  }

  /** This incarnation's owner id: what its claims and sessions carry. */
  get owner(): string {
    return this.current;
  }

  /** Whether the lease is surely still this node's: renewed less than a lease ago. */
  get held(): boolean {
    return Date.now() - this.lastRenewal < this.leaseMs;
  }

  /**
   * Renews; then, once healthy for a whole lease, fences the owners whose
   * lease ran out. Returns the live (unfenced) owners, or undefined while
   * the store is away.
   */
  async tick(): Promise<string[] | undefined> {
    if (this.duplicate) {
      this.log.error({ node: this.node }, 'another process runs under this node name: this one holds no work (give every node its own HERALD_NODE_NAME)');
      return undefined;
    }
    try {
      // The lease counts from before the request: the store's clock started it no later.
      const sent = Date.now();
      if (!(await this.store.renewLease(this.current, this.leaseMs))) {
        const old = this.current;
        const mine = ownerEpoch(old) ?? 0;
        const newer = (await this.store.liveOwners()).find((o) => ownerNode(o) === this.node && (ownerEpoch(o) ?? 0) > mine);
        if (newer !== undefined) {
          // A second process started under this name and fenced this one: taking the name back would fence it in turn, forever.
          this.duplicate = true;
          this.lastRenewal = 0;
          this.log.error({ fenced: old, newer }, 'another process runs under this node name: this one drops its work and holds none (give every node its own HERALD_NODE_NAME)');
          await this.onFenced(old, old);
          return undefined;
        }
        this.current = await this.store.beginIncarnation(this.node, this.leaseMs);
        this.log.error({ fenced: old, owner: this.current }, 'this node was cut off from the store past its lease and fenced: the others took its queue claims and MQTT sessions; going on as a new incarnation');
        this.healthySince = undefined;
        await this.onFenced(old, this.current);
      }
      const now = Date.now();
      this.lastRenewal = sent;
      this.healthySince ??= now;
      this.outage.ok();
      if (now - this.healthySince >= this.leaseMs) {
        const fenced = await this.store.fenceExpired();
        if (fenced.length > 0) this.log.warn({ fenced }, 'nodes stopped renewing their lease: their work is taken over');
      }
      return await this.store.liveOwners();
    } catch (err) {
      this.healthySince = undefined;
      this.outage.failed(err);
      return undefined;
    }
  }
}
