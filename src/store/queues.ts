/**
 * Point-to-point `/queue/` messages, kept until a consumer acknowledges
 * them, each claimed by one node at a time.
 * Implemented by sqlite/queues.ts and postgres/queues.ts.
 */

/** A message kept on a point-to-point `/queue/` until a consumer acknowledges it. */
export interface NewQueuedMessage {
  queue: string;
  body: Buffer;
  contentType: string | null;
  headers: [string, string][];
  createdAt: number;
}

export interface QueuedMessage extends NewQueuedMessage {
  /** Increases with insertion order within the store. */
  id: string;
  /** It was handed to a consumer before, which did not acknowledge it. */
  redelivered: boolean;
}

export interface QueueStore {
  /** Keeps a queue message until `dequeue`; returns its id. With `claimedBy`, it is stored already claimed by that node. */
  enqueue(message: NewQueuedMessage, claimedBy?: string): Promise<string>;
  /**
   * Claims up to `limit` unclaimed messages of a queue for `owner` (a node),
   * oldest first. No two claims ever return the same message, whichever
   * nodes ask at the same time.
   */
  claimQueue(queue: string, owner: string, limit: number): Promise<QueuedMessage[]>;
  /** Hands claimed messages back (their consumer went away); any node may claim them again. `redelivered` marks them as delivered once already. */
  releaseQueued(ids: readonly string[], redelivered: boolean): Promise<void>;
  /**
   * Releases every claim of an owner neither in `liveOwners` nor a live
   * incarnation (LeaseStore: not fenced), marked redelivered (its consumer
   * may have had them); returns the queues that got messages back. The
   * incarnations are read in the same statement, so a node that has just
   * started and claimed keeps its claims.
   */
  releaseDeadClaims(liveOwners: readonly string[]): Promise<string[]>;
  /** Removes a consumed queue message. */
  dequeue(id: string): Promise<boolean>;
}
