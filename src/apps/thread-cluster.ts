/**
 * Chat threads in cluster mode: a node that changes a thread's record tells
 * the others, which forget their cached copy (`thread`); and since another
 * node may create a thread at any moment, "no such thread" is not remembered.
 */
import type { ClusterControl } from '../core/cluster-link.js';
import type { ThreadService } from './threads.js';

export function joinClusterThreads(threads: ThreadService, cluster: ClusterControl): void {
  threads.onChange = (topic) => cluster.broadcast('thread', topic);
  threads.rememberMisses = false;
  cluster.on<string>('thread', (topic) => threads.forget(topic));
}
