/** Liveness, readiness and Prometheus metrics. */
import type { RouteContext } from './app.js';
import { HttpError, ok } from './envelope.js';

export function registerHealthRoutes(ctx: RouteContext, state: { draining: () => boolean; startedAt: number }): void {
  const { http, store, metrics } = ctx;

  http.get('/healthz', async () => ok({ status: 'ok', uptimeSeconds: Math.round((Date.now() - state.startedAt) / 1000) }));

  http.get('/readyz', async () => {
    if (state.draining()) throw new HttpError(503, 'server is shutting down');
    try {
      await store.ping();
    } catch (err) {
      throw new HttpError(503, `store (${store.kind}) is unreachable: ${(err as Error).message}`);
    }
    if (ctx.cluster && !ctx.cluster.connected) throw new HttpError(503, 'Redis (cluster bus) is unreachable; retrying');
    return ok({ status: 'ready', store: store.kind, node: ctx.nodeId, cluster: ctx.cluster !== undefined });
  });

  http.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
