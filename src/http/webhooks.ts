/**
 * The webhook outbox for admins: what is configured and waiting, the
 * recent deliveries, the dead list, and replaying from it.
 */
import type { RouteContext } from './app.js';
import { requireAuth } from './app.js';
import { badRequest, notFound, ok } from './envelope.js';
import type { WebhookDelivery, WebhookState } from '../store/store.js';
import type { Webhooks } from '../webhooks/index.js';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** A row as the admin API shows it, with the event as its receiver gets it. */
export function deliveryView(r: WebhookDelivery) {
  return {
    id: r.id,
    eventId: r.eventId,
    webhook: r.webhook,
    type: r.type,
    orderKey: r.orderKey,
    state: r.state,
    attempts: r.attempts,
    createdAt: iso(r.createdAt),
    nextAttemptAt: r.state === 'pending' ? iso(r.dueAt) : null,
    finishedAt: iso(r.finishedAt),
    lastStatus: r.lastStatus,
    lastError: r.lastError,
    event: JSON.parse(r.body) as unknown,
  };
}

const LIST_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    webhook: { type: 'string', minLength: 1, maxLength: 200 },
    before: { type: 'string', pattern: '^[1-9][0-9]{0,15}$' },
    limit: { type: 'integer', minimum: 1, maximum: 500 },
  },
} as const;

type ListQuery = { webhook?: string; before?: string; limit?: number };

export function registerWebhookRoutes(ctx: RouteContext, webhooks: Webhooks | undefined): void {
  const { http, store } = ctx;
  const admin = requireAuth(ctx, ['admin']);

  const list = async (state: WebhookState, q: ListQuery) => {
    const rows = await store.listWebhookEvents({
      state,
      limit: q.limit ?? 50,
      ...(q.webhook !== undefined ? { webhook: q.webhook } : {}),
      ...(q.before !== undefined ? { beforeId: q.before } : {}),
    });
    return ok(rows.map(deliveryView));
  };

  http.get('/api/admin/webhooks', { preHandler: admin }, async () => {
    const configured = (webhooks?.specs ?? []).map((s) => ({ name: s.name, url: s.url, events: s.events, topics: s.topics }));
    const backlog = (await store.webhookBacklog()).map((b) => ({ ...b, oldestPendingAt: iso(b.oldestPendingAt), configured: configured.some((c) => c.name === b.webhook) }));
    return ok({ webhooks: configured, backlog });
  });

  http.get<{ Querystring: ListQuery & { state?: WebhookState } }>(
    '/api/admin/webhooks/deliveries',
    {
      preHandler: admin,
      schema: { querystring: { ...LIST_QUERY, properties: { ...LIST_QUERY.properties, state: { type: 'string', enum: ['delivered', 'pending', 'dead'] } } } },
    },
    async (req) => list(req.query.state ?? 'delivered', req.query),
  );

  http.get<{ Querystring: ListQuery }>('/api/admin/webhooks/dead', { preHandler: admin, schema: { querystring: LIST_QUERY } }, async (req) => list('dead', req.query));

  http.post<{ Body: { ids?: string[]; all?: boolean } }>(
    '/api/admin/webhooks/dead/replay',
    {
      preHandler: admin,
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ids: { type: 'array', minItems: 1, maxItems: 10_000, items: { type: 'string', pattern: '^[1-9][0-9]{0,15}$' } },
            all: { type: 'boolean', const: true },
          },
        },
      },
    },
    async (req) => {
      const { ids, all } = req.body;
      if ((ids === undefined) === (all === undefined)) throw badRequest('give either "ids" (the dead list\'s ids to replay) or "all": true');
      const replayed = await store.replayWebhookEvents(all ? 'all' : ids!, ctx.clock.now());
      webhooks?.poke();
      return ok({ replayed });
    },
  );

  http.post<{ Params: { id: string } }>(
    '/api/admin/webhooks/dead/:id/replay',
    { preHandler: admin, schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,15}$' } } } } },
    async (req) => {
      const replayed = await store.replayWebhookEvents([req.params.id], ctx.clock.now());
      if (replayed === 0) throw notFound(`no event ${req.params.id} on the dead list`);
      webhooks?.poke();
      return ok({ replayed });
    },
  );
}
