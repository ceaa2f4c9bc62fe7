/**
 * One question asked of every node (the console's figures: live
 * subscriptions, a session in detail, queues, node health): this node
 * answers itself at once, the others over the cluster's control channel
 * (ClusterControl.survey) within a time limit; alone, only this node
 * answers. A node that does not answer in time is named in `missing`, so
 * the console can say whose figures are not in what it shows.
 */
import type { ClusterControl } from './cluster-link.js';
import type { Presence } from './presence.js';

/** How long a question waits for the other nodes by default. */
export const SURVEY_WAIT_MS = 800;

export interface NodeAnswers<A> {
  /** Answers by node id, this node's first. */
  answers: Map<string, A>;
  /** Nodes asked that did not answer in time (or could not be listed: Redis away). */
  missing: string[];
}

/** Asks the question of every node, or of one (`node`); resolves with the answers gathered. */
export type Ask<B, A> = (body: B, options?: { node?: string; timeoutMs?: number }) => Promise<NodeAnswers<A>>;

export class ClusterQuestions {
  constructor(
    private readonly nodeId: string,
    private readonly cluster: ClusterControl | undefined,
    private readonly presence: Pick<Presence, 'nodes'>,
  ) {}

  /**
   * Registers a question of type `type` that every node answers with
   * `answer` (undefined: no answer, such as "I do not hold that session"),
   * and returns how to ask it. Each type is defined once per node, at start.
   */
  define<B, A>(type: string, answer: (body: B) => A | undefined | Promise<A | undefined>): Ask<B, A> {
    this.cluster?.on<B, A>(type, (body) => answer(body));
    return async (body, options = {}) => {
      const answers = new Map<string, A>();
      const here = options.node === undefined || options.node === this.nodeId;
      if (here) {
        const mine = await answer(body);
        if (mine !== undefined) answers.set(this.nodeId, mine);
      }
      const cluster = this.cluster;
      if (!cluster || options.node === this.nodeId) return { answers, missing: [] };
      let others: string[];
      try {
        others = options.node !== undefined ? [options.node] : (await this.presence.nodes()).map((n) => n.id).filter((id) => id !== this.nodeId);
      } catch {
        return { answers, missing: ['(the other nodes: Redis is unreachable)'] };
      }
      if (others.length === 0) return { answers, missing: [] };
      const got = await cluster.survey<A>(type, body, { waitFor: others, timeoutMs: options.timeoutMs ?? SURVEY_WAIT_MS });
      for (const id of others) {
        const a = got.get(id);
        if (a !== undefined) answers.set(id, a);
      }
      return { answers, missing: others.filter((id) => !got.has(id)) };
    };
  }
}
