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
  /**
   * Whether the other nodes can see this one. While they cannot, it takes no
   * queue messages: after the presence TTL they would count it dead and hand
   * its claims to someone else.
   */
  readonly connected: boolean;
  /** This node starts (`on`) or stops needing a topic filter's or a user's messages, or a queue's pokes. */
  interest(kind: 'topic' | 'user' | 'queue', key: string, on: boolean): void;
  /** Sends a topic or user message published on this node to the nodes that need it. */
  forward(msg: CoreMessage): void;
  /** Tells other nodes' consumers of a queue that unclaimed messages wait in the store. */
  pokeQueue(name: string): void;
  /** This node has (`on`) or no longer has members of a shared subscription group. */
  sharedInterest(group: string, filter: string, on: boolean): void;
  /** Whether this node is the one that hands `msg` to the group (exactly one node per message). */
  sharedPick(group: string, filter: string, msg: CoreMessage): boolean;
}
