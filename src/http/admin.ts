/**
 * The console's admin API: the overview's figures and their history,
 * ending a session, the audit log and the access rules in force. Routes
 * for further console pages (subscriptions, retained messages, queues, node
 * health) belong here or beside it, one file per resource.
 */
import type { RouteContext } from './app.js';
import { requireAuth } from './app.js';
import { HttpError, ok } from './envelope.js';
import { HISTORY_RANGES, type HistoryRange } from '../core/history.js';
import { HERALD_VERSION } from '../version.js';
import { TOKEN_QUERY, arrayOf, closed, errors, okEnvelope, ref, type JsonSchema } from './schemas.js';

/** A page of records, as the console's paged lists take it. */
const page = (record: JsonSchema, description: string): JsonSchema =>
  okEnvelope(closed({ records: arrayOf(record), total: { type: 'integer' }, current: { type: 'integer', description: 'this page, from 1' }, size: { type: 'integer' }, pages: { type: 'integer' } }), description);
const AUDIT_ENTRY = closed({
  id: { type: 'string' },
  at: { type: 'string', format: 'date-time' },
  actorId: { type: 'string' },
  actorName: { type: 'string', description: 'who did it' },
  action: { type: 'string', description: 'what, such as user.update or app.rotate' },
  target: { type: 'string', description: 'to what, in words' },
  detail: { type: 'object', description: 'what changed (never a password)' },
  address: { type: 'string', description: 'from where' },
  node: { type: 'string', description: 'the node that answered' },
});
const ACL_RULE = closed({
  effect: { type: 'string', enum: ['allow', 'deny'] },
  action: { type: 'string', enum: ['publish', 'subscribe', 'all'] },
  topic: { type: 'string' },
  who: { type: 'string' },
});

const MAX_AUDIT_PAGE = 100;

export function registerAdminRoutes(ctx: RouteContext, startedAt: number): void {
  const { http, metrics, presence, history, audit, store } = ctx;
  const managers = requireAuth(ctx, ['admin', 'service']);
  const admins = requireAuth(ctx, ['admin']);

  /** A per-protocol metric as {protocol: value}. */
  const byProtocol = async (metric: { get(): Promise<{ values: { value: number; labels: Partial<Record<string, string | number>> }[] }> }): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const v of (await metric.get()).values) {
      const key = String(v.labels['protocol'] ?? '');
      out[key] = (out[key] ?? 0) + v.value;
    }
    return out;
  };

  /** Figures for the console's overview, now; counters are totals (the history has the rates). */
  const overview = { tags: ['admin'], operationId: 'overview', summary: "The figures of the console's overview", response: { 200: okEnvelope(ref('Overview'), 'the figures') } };
  http.get('/api/admin/overview', { preHandler: managers, schema: overview }, async () => {
    let storeSeconds = 0;
    let storeCalls = 0;
    for (const v of (await metrics.storeSeconds.get()).values) {
      const name = (v as { metricName?: string }).metricName ?? '';
      if (name.endsWith('_sum')) storeSeconds += v.value;
      if (name.endsWith('_count')) storeCalls += v.value;
    }
    return ok({
      version: HERALD_VERSION,
      node: ctx.nodeId,
      cluster: ctx.cluster !== undefined,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      connections: await byProtocol(metrics.connections),
      messagesIn: await byProtocol(metrics.messagesIn),
      messagesOut: await byProtocol(metrics.messagesOut),
      store: { kind: store.kind, calls: storeCalls, seconds: storeSeconds },
      nodes: await presence.nodes(),
    });
  });

  /** This node's history of the overview series (core/history.ts): the console's charts, across reloads. */
  http.get<{ Querystring: { range?: HistoryRange; since?: number } }>(
    '/api/admin/history',
    {
      preHandler: managers,
      schema: {
        tags: ['admin'],
        operationId: 'history',
        summary: "This node's history of the overview's series, sampled every historySampleSeconds, kept 24 h in memory",
        response: {
          200: okEnvelope(
            {
              type: 'object',
              required: ['node', 'cluster', 'range'],
              properties: {
                node: { type: 'string' },
                cluster: { type: 'boolean', description: 'true: the history is of this node only' },
                range: { type: 'string' },
              },
              additionalProperties: true,
              description: 'the sample times and one array of values per series (at most about 360 points)',
            },
            'the series',
          ),
        },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...TOKEN_QUERY,
            range: { type: 'string', enum: Object.keys(HISTORY_RANGES) },
            since: { type: 'integer', minimum: 0 },
          },
        },
      },
    },
    async (req) => ok({ node: ctx.nodeId, cluster: ctx.cluster !== undefined, range: req.query.range ?? '1h', ...history.query(req.query.range ?? '1h', req.query.since) }),
  );

  /** Ends one session (on whichever node it is) with a "kicked" close in its protocol's words. */
  const disconnect = {
    tags: ['admin'],
    operationId: 'disconnectSession',
    summary: 'End a session, on whichever node holds it',
    description: 'The client is told why in its protocol ("kicked": a STOMP ERROR, an MQTT 5 DISCONNECT, a WebSocket close).',
    params: { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'the sessionId (from getWebSocketClients)' } } },
    response: {
      200: okEnvelope(closed({ sessionId: { type: 'string' }, node: { type: 'string', description: 'the node that held it' } }), 'told to end'),
      ...errors({ 404: 'no such session is online' }),
    },
  };
  http.post<{ Params: { id: string } }>('/api/admin/sessions/:id/disconnect', { preHandler: managers, schema: disconnect }, async (req) => {
    const id = req.params.id;
    const by = `disconnected by ${req.principal!.name}`;
    const local = ctx.sessions.get(id);
    let node = ctx.nodeId;
    let who: string;
    if (local) {
      who = `${local.principal.name}'s ${local.protocol} session ${id}`;
      local.close({ code: 'kicked', message: by });
    } else {
      const entry = (await presence.sessions()).find((s) => s.sessionId === id);
      if (!entry) throw new HttpError(404, `no session ${id} is online`);
      node = entry.node;
      who = `${entry.name}'s ${entry.protocol} session ${id}`;
      presence.kick(entry.node, id, by);
    }
    await audit.record(req, 'session.disconnect', who, { node });
    return ok({ sessionId: id, node });
  });

  /** The audit log, newest first: who did what, when and from where. */
  http.get<{ Querystring: { page?: number; size?: number; action?: string; actor?: string } }>(
    '/api/admin/audit',
    {
      preHandler: admins,
      schema: {
        tags: ['admin'],
        operationId: 'auditLog',
        summary: 'The audit log, newest first: who did what, when and from where',
        response: { 200: page(AUDIT_ENTRY, 'a page of the audit log') },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...TOKEN_QUERY,
            page: { type: 'integer', minimum: 1, maximum: 1_000_000 },
            size: { type: 'integer', minimum: 1, maximum: MAX_AUDIT_PAGE },
            action: { type: 'string', pattern: '^[a-z]+(\\.[a-z-]+)?$' },
            actor: { type: 'string', minLength: 1, maxLength: 128 },
          },
        },
      },
    },
    async (req) => {
      const { page = 1, size = 50, action, actor } = req.query;
      const result = await store.queryAudit({ page, size, ...(action !== undefined ? { action } : {}), ...(actor !== undefined ? { actor } : {}) });
      return ok({
        records: result.items.map((e) => ({ ...e, at: new Date(e.at).toISOString(), detail: JSON.parse(e.detail) as unknown })),
        total: result.total,
        current: page,
        size,
        pages: Math.ceil(result.total / size),
      });
    },
  );

  /** The topic access rules in force (aclFile), in the order they are tried. */
  const acl = {
    tags: ['admin'],
    operationId: 'accessRules',
    summary: 'The topic access rules in force (aclFile), in the order they are tried',
    response: {
      200: okEnvelope(closed({ file: { anyOf: [{ type: 'string' }, { type: 'null' }] }, rules: arrayOf(ACL_RULE), summary: { type: 'string', description: 'what they mean, in words' } }), 'the rules'),
    },
  };
  http.get('/api/admin/acl', { preHandler: admins, schema: acl }, async () => {
    const rules = ctx.acl.listRules();
    return ok({
      file: ctx.config.aclFile || null,
      rules: rules ?? [],
      summary: rules
        ? `${rules.length} rule${rules.length === 1 ? '' : 's'} from ${ctx.config.aclFile}; the first that matches decides, and what no rule allows is denied`
        : 'no aclFile is set: every authenticated client may publish and subscribe to any topic, and anonymous ones to none',
    });
  });
}
