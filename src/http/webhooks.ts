/**
 * The webhook outbox for admins: what is configured and waiting, the
 * recent deliveries, the dead list, and replaying from it.
 */
import type { RouteContext } from './app.js';
import { requireAuth } from './app.js';
import { badRequest, notFound, ok } from './envelope.js';
import type { WebhookDelivery, WebhookState } from '../store/store.js';
import type { Webhooks } from '../webhooks/index.js';
import { TOKEN_QUERY, arrayOf, closed, errors, okEnvelope, type JsonSchema } from './schemas.js';

const nullable = (schema: JsonSchema, description: string): JsonSchema => ({ anyOf: [schema, { type: 'null' }], description });
const TIME: JsonSchema = { type: 'string', format: 'date-time' };
const DELIVERY: JsonSchema = closed({
  id: { type: 'string', description: 'the row: increases in the order rows were written; `before` pages on it' },
  eventId: { type: 'string', description: 'Herald-Event-Id: the same for every webhook and attempt' },
  webhook: { type: 'string', description: 'the webhook\'s name (by default its URL)' },
  type: { type: 'string', description: 'the event type, such as message.undelivered' },
  orderKey: { type: 'string', description: 'events of one key reach a webhook in order' },
  state: { type: 'string', enum: ['pending', 'delivered', 'dead'] },
  attempts: { type: 'integer' },
  createdAt: TIME,
  nextAttemptAt: nullable(TIME, 'pending rows: when the next attempt may be made'),
  finishedAt: nullable(TIME, 'when it was delivered or given up'),
  lastStatus: nullable({ type: 'integer' }, 'the HTTP status of the last attempt, if an answer came'),
  lastError: nullable({ type: 'string' }, 'why the last attempt failed'),
  event: { type: 'object', description: 'the body as the receiver gets it: {id, type, createdAt, data}' },
});
const REPLAYED = okEnvelope(closed({ replayed: { type: 'integer', description: 'events put back in the outbox' } }), 'replayed');

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
    ...TOKEN_QUERY,
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

  const listed = { tags: ['webhooks'], response: { 200: okEnvelope(arrayOf(DELIVERY), 'outbox rows, newest first') } };
  const overview = {
    tags: ['webhooks'],
    operationId: 'listWebhooks',
    summary: 'The configured webhooks and their outbox',
    response: {
      200: okEnvelope(
        closed({
          webhooks: arrayOf(
            closed(
              { name: { type: 'string' }, url: { type: 'string' }, events: arrayOf({ type: 'string' }), topics: arrayOf({ type: 'string' }) },
              ['topics'],
            ),
          ),
          backlog: arrayOf(
            closed({
              webhook: { type: 'string' },
              pending: { type: 'integer' },
              dead: { type: 'integer' },
              oldestPendingAt: nullable(TIME, 'the oldest pending event'),
              configured: { type: 'boolean', description: 'false: rows of a webhook no longer in the configuration' },
            }),
          ),
        }),
        'webhooks (no secrets) and the outbox per webhook',
      ),
    },
  };
  http.get('/api/admin/webhooks', { preHandler: admin, schema: overview }, async () => {
    const configured = (webhooks?.specs ?? []).map((s) => ({ name: s.name, url: s.url, events: s.events, topics: s.topics }));
    const backlog = (await store.webhookBacklog()).map((b) => ({ ...b, oldestPendingAt: iso(b.oldestPendingAt), configured: configured.some((c) => c.name === b.webhook) }));
    return ok({ webhooks: configured, backlog });
  });

  http.get<{ Querystring: ListQuery & { state?: WebhookState } }>(
    '/api/admin/webhooks/deliveries',
    {
      preHandler: admin,
      schema: {
        ...listed,
        operationId: 'listWebhookDeliveries',
        summary: 'Outbox rows in one state (default: recently delivered)',
        querystring: { ...LIST_QUERY, properties: { ...LIST_QUERY.properties, state: { type: 'string', enum: ['delivered', 'pending', 'dead'] } } },
      },
    },
    async (req) => list(req.query.state ?? 'delivered', req.query),
  );

  http.get<{ Querystring: ListQuery }>(
    '/api/admin/webhooks/dead',
    { preHandler: admin, schema: { ...listed, operationId: 'listDeadWebhookEvents', summary: 'The dead list: events that failed their last attempt', querystring: LIST_QUERY } },
    async (req) => list('dead', req.query),
  );

  http.post<{ Body: { ids?: string[]; all?: boolean } }>(
    '/api/admin/webhooks/dead/replay',
    {
      preHandler: admin,
      schema: {
        tags: ['webhooks'],
        operationId: 'replayDeadWebhookEvents',
        summary: 'Send dead events again: some by id, or all',
        response: { 200: REPLAYED },
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
      if (replayed > 0) await ctx.audit.record(req, 'webhook.replay', all ? 'every dead event' : `dead events ${ids!.slice(0, 20).join(', ')}${ids!.length > 20 ? ', …' : ''}`, { replayed });
      return ok({ replayed });
    },
  );

  http.post<{ Params: { id: string } }>(
    '/api/admin/webhooks/dead/:id/replay',
    {
      preHandler: admin,
      schema: {
        tags: ['webhooks'],
        operationId: 'replayDeadWebhookEvent',
        summary: 'Send one dead event again (same id and body, attempts from 0)',
        params: { type: 'object', properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,15}$' } } },
        response: { 200: REPLAYED, ...errors({ 404: 'not on the dead list' }) },
      },
    },
    async (req) => {
      const replayed = await store.replayWebhookEvents([req.params.id], ctx.clock.now());
      if (replayed === 0) throw notFound(`no event ${req.params.id} on the dead list`);
      webhooks?.poke();
      await ctx.audit.record(req, 'webhook.replay', `dead event ${req.params.id}`, { replayed });
      return ok({ replayed });
    },
  );
}
