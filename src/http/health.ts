/** Liveness, readiness and Prometheus metrics. */
import { errorText } from '../core/background.js';
import type { Logger } from '../log.js';
import type { RouteContext } from './app.js';
import { ok } from './envelope.js';
import { closed, errorAnswer, okEnvelope } from './schemas.js';

/** Why the node is not ready; undefined when it is. */
type Cause = 'draining' | 'store' | 'redis';

/**
 * Readiness as the log tells it: one line when it turns bad (warn, naming
 * the cause; info for a shutdown, which is meant), one when it turns good
 * again (info). A load balancer polling a node that stays down writes
 * nothing more, and no line has a stack.
 */
export class ReadinessLog {
  private cause: Cause | undefined;

  constructor(private readonly log: Logger) {}

  notReady(cause: Cause, reason: string): void {
    if (this.cause === cause) return;
    this.cause = cause;
    if (cause === 'draining') this.log.info({ ready: false, cause }, `not ready: ${reason}`);
    else this.log.warn({ ready: false, cause }, `not ready: ${reason}`);
  }

  ready(): void {
    if (this.cause === undefined) return;
    const was = this.cause;
    this.cause = undefined;
    this.log.info({ ready: true, was }, 'ready again');
  }
}

export function registerHealthRoutes(ctx: RouteContext, state: { draining: () => boolean; startedAt: number }): void {
  const { http, store, metrics } = ctx;
  const readiness = new ReadinessLog(ctx.log.child({ component: 'readiness' }));

  http.get(
    '/healthz',
    {
      schema: {
        tags: ['health'],
        operationId: 'healthz',
        summary: 'Liveness: the process answers',
        response: { 200: okEnvelope(closed({ status: { type: 'string', enum: ['ok'] }, uptimeSeconds: { type: 'integer' } }), 'alive') },
      },
    },
    async () => ok({ status: 'ok', uptimeSeconds: Math.round((Date.now() - state.startedAt) / 1000) }),
  );

  // A 503 here is an answer, not a failure of the request: it is sent as is (not thrown to the error handler,
  // which would log every poll), and only the change of state is logged.
  http.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        operationId: 'readyz',
        summary: 'Readiness: whether a load balancer should send clients here',
        description:
          'Not ready (503) from the first moment of a shutdown (drainReadySeconds before any client is disconnected), or while the store, or in a cluster Redis, is unreachable; the message names the cause.',
        response: {
          200: okEnvelope(
            closed({
              status: { type: 'string', enum: ['ready'] },
              store: { type: 'string', enum: ['sqlite', 'postgres'] },
              node: { type: 'string', description: 'this node' },
              cluster: { type: 'boolean' },
            }),
            'ready',
          ),
          503: errorAnswer('not ready: shutting down, or the store or Redis is unreachable (the message says which)'),
        },
      },
    },
    async (_req, reply) => {
      const notReady = (cause: Cause, message: string): { code: number; message: string; data: null } => {
        readiness.notReady(cause, message);
        void reply.code(503);
        return { code: 503, message, data: null };
      };
      if (state.draining()) return notReady('draining', 'server is shutting down');
      try {
        await store.ping();
      } catch (err) {
        return notReady('store', `store (${store.kind}) is unreachable: ${errorText(err)}`);
      }
      if (ctx.cluster && !ctx.cluster.connected) return notReady('redis', 'Redis (cluster bus) is unreachable; retrying');
      readiness.ready();
      return ok({ status: 'ready', store: store.kind, node: ctx.nodeId, cluster: ctx.cluster !== undefined });
    },
  );

  http.get(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        operationId: 'metrics',
        summary: 'Prometheus metrics (herald_*)',
        description: 'The Prometheus text format, not the envelope.',
        response: { 200: { description: 'the metrics of this node', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    },
    async (_req, reply) => {
      void reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );
}
