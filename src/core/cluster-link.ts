import type { CoreMessage } from './message.js';

/**
 * How the broker reaches other nodes (cluster mode); absent on a single node.
 * The broker says what its local subscribers need and forwards what is
 * published here; the link delivers what other nodes publish back through
 * `Broker.receiveRemote` and `Broker.queuePoked`.
 *
 * Each engine sees only the part it uses (`Pick<ClusterLink, …>`), so its
 * tests can stand in for the cluster with a few lines.
 */
export interface ClusterLink {
  readonly nodeId: string;
  /** This node's incarnation (store/leases.ts): the owner its queue claims and MQTT sessions carry. */
  readonly owner: string;
  /**
   * Whether this node's lease in the store is surely its own. While it is
   * not, it takes no queue messages: the others may be about to fence it
   * and hand its claims to someone else.
   */
  readonly leased: boolean;
  /** This node starts (`on`) or stops needing a topic filter's or a user's messages, or a queue's pokes. */
  interest(kind: 'topic' | 'user' | 'queue', key: string, on: boolean): void;
  /**
   * Resolves once messages for a topic filter or a user that this node
   * needs (`interest` on) published on any node reach it: a subscription is
   * acknowledged to the client only then.
   */
  routeReady(kind: 'topic' | 'user', key: string): Promise<void>;
  /** Sends a topic or user message published on this node to the nodes that need it. */
  forward(msg: CoreMessage): void;
  /** Tells other nodes' consumers of a queue that unclaimed messages wait in the store. */
  pokeQueue(name: string): void;
  /** This node has (`on`) or no longer has members of a shared subscription group. */
  sharedInterest(group: string, filter: string, on: boolean): void;
  /** Whether this node is the one that hands `msg` to the group (exactly one node per message). */
  sharedPick(group: string, filter: string, msg: CoreMessage): boolean;
}

/**
 * What a feature sees of the cluster (cluster mode only): control messages
 * between nodes, and the node lifecycle. The cluster routes them without
 * knowing what they mean: each feature registers its own types where it is
 * wired (MQTT takeover and wills in the MQTT front end, credential changes
 * next to Auth, thread invalidation next to the thread service), in the way
 * centrifuge's node hands application control messages to hooks.
 *
 * Control messages are small JSON values; a node never receives its own.
 */
export interface ClusterControl {
  readonly nodeId: string;
  /** Whether Redis answers: the other nodes can see this one, and messages reach them. */
  readonly connected: boolean;
  /** Nodes alive at the last heartbeat (this one included). */
  readonly liveNodes: ReadonlySet<string>;
  /**
   * Handles control messages of one `type` (one handler per type). What the
   * handler returns (unless undefined) answers a `survey`; a broadcast or a
   * `send` ignores it.
   */
  on<B, A = void>(type: string, handler: ControlHandler<B, A>): void;
  /** Sends a control message to every other node. */
  broadcast(type: string, body: unknown): void;
  /** Sends a control message to one node. */
  send(node: string, type: string, body: unknown): void;
  /**
   * Asks every other node and gathers the answers (by node) of those in
   * `waitFor`, for at most `timeoutMs`: what has not answered by then is
   * left out. With `waitFor` empty it resolves at once, after sending.
   */
  survey<A>(type: string, body: unknown, options: { waitFor: readonly string[]; timeoutMs: number }): Promise<Map<string, A>>;
  /** This incarnation's owner id (store/leases.ts). */
  readonly owner: string;
  /**
   * Runs after each renewal of the node's lease, with the owner ids of the
   * live incarnations (a failure is logged; the next beat tries again).
   */
  onHeartbeat(hook: (liveOwners: ReadonlySet<string>) => Promise<void>): void;
  /** Runs when this node learns it was fenced: what it held is other nodes' now; it goes on as a new incarnation. */
  onFenced(hook: () => Promise<void>): void;
  /** Runs after Redis comes back (and at start): rewrite what this node keeps there. */
  onReconnect(hook: () => Promise<void>): void;
  /** Runs when the node leaves the cluster, before the bus closes. */
  onStop(hook: () => Promise<void>): void;
  /**
   * Records this node keeps in the cluster for as long as it lives; if it
   * dies, one live node (exactly one) is handed them through `orphaned`.
   * Writes are best effort: after Redis comes back they are written again.
   */
  nodeRecords(name: string, orphaned: (node: string, records: Map<string, Buffer>) => Promise<void>): NodeRecords;
  /**
   * A counter shared by every node, per key, over a fixed window that starts
   * at the first hit (login failures and the like).
   */
  windowCounter(name: string, limit: number, windowMs: number): WindowCounter;
}

export type ControlHandler<B, A> = (body: B, from: string) => A | undefined | Promise<A | undefined>;

/** See ClusterControl.nodeRecords. */
export interface NodeRecords {
  get(key: string): Buffer | undefined;
  set(key: string, value: Buffer): void;
  delete(key: string): void;
  /** Whether this node holds any records now. */
  readonly size: number;
}

/** See ClusterControl.windowCounter; its shape is Auth's SharedFailureCounter. */
export interface WindowCounter {
  /** Milliseconds until `key` may try again, 0 while it is under the limit. */
  blockedFor(key: string): Promise<number>;
  hit(key: string): Promise<void>;
  reset(key: string): Promise<void>;
  /** Takes back one hit of the current window, if it still runs. */
  unhit(key: string): Promise<void>;
}
