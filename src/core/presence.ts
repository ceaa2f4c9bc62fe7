/**
 * Presence: who is connected, on every node. On a single node it is the
 * session registry; in cluster mode each node keeps its sessions in Redis
 * with a TTL, so a node that dies takes its sessions with it within
 * `presenceTtlSeconds`.
 */
import type { Protocol, SessionInfo, SessionRegistry } from './session.js';

export interface PresenceEntry {
  sessionId: string;
  node: string;
  protocol: Protocol;
  userId: string;
  name: string;
  role: string;
  remoteAddress: string;
  device: string;
  connectedAt: number;
  /** Live figures: for this node's sessions always; for other nodes' when asked for ({stats: true}) and they answer in time. */
  subscriptions?: number;
  unacked?: number;
}

export interface NodeInfo {
  id: string;
  startedAt: number;
  connections: number;
  /** Last heartbeat (ms since epoch). */
  seenAt: number;
}

export interface Presence {
  /** Every session on every live node; with `stats`, other nodes are asked for their live figures too. */
  sessions(opts?: { stats?: boolean }): Promise<PresenceEntry[]>;
  /** Users with at least one session anywhere. */
  onlineUsers(): Promise<string[]>;
  /** Live nodes. */
  nodes(): Promise<NodeInfo[]>;
  /** Ends a session on whichever node holds it (the console's "disconnect"), with a "kicked" close. */
  kick(node: string, sessionId: string, message: string): void;
}

export function presenceEntry(s: SessionInfo, node: string): PresenceEntry {
  return {
    sessionId: s.id,
    node,
    protocol: s.protocol,
    userId: s.principal.userId,
    name: s.principal.name,
    role: s.principal.role,
    remoteAddress: s.remoteAddress,
    device: s.device,
    connectedAt: s.connectedAt,
  };
}

/** Single node: presence is this node's registry. */
export class LocalPresence implements Presence {
  constructor(
    private readonly registry: SessionRegistry,
    private readonly nodeId: string,
    private readonly startedAt: number,
  ) {}

  async sessions(): Promise<PresenceEntry[]> {
    return [...this.registry.all()].map((s) => ({ ...presenceEntry(s, this.nodeId), ...s.stats() }));
  }

  async onlineUsers(): Promise<string[]> {
    return [...new Set([...this.registry.all()].map((s) => s.principal.userId))];
  }

  kick(_node: string, sessionId: string, message: string): void {
    this.registry.get(sessionId)?.close({ code: 'kicked', message });
  }

  async nodes(): Promise<NodeInfo[]> {
    return [{ id: this.nodeId, startedAt: this.startedAt, connections: this.registry.size, seenAt: Date.now() }];
  }
}
