/**
 * Traces for the console's live debug (core/trace.ts): open one on a topic
 * filter, read its events as they come (each message with its publisher
 * and receivers, on every node), close it. Admins only: a trace shows the
 * start of every traced message's payload.
 */
import type { RouteContext } from './app.js';
import { requireAuth } from './app.js';
import { HttpError, badRequest, notFound, ok } from './envelope.js';
import { filterProblem, topicFromDotted } from '../core/destination.js';
import { MAX_TRACES, TRACE_IDLE_MS, TRACE_KEPT, Tracer, type TraceSpec } from '../core/trace.js';
import { TOKEN_QUERY, arrayOf, closed, errors, okEnvelope, type JsonSchema } from './schemas.js';

const PARTY = closed({ sessionId: { type: 'string' }, user: { type: 'string' }, protocol: { type: 'string', description: 'empty for a shared group' } });
const EVENT = closed({
  seq: { type: 'integer' },
  at: { type: 'integer', description: 'when it passed (epoch ms)' },
  node: { type: 'string', description: 'the node where it passed' },
  messageId: { type: 'string', description: 'the same on every node a message passes' },
  topic: { type: 'string' },
  origin: { type: 'string', enum: ['published', 'received'], description: 'published on that node, or received from another' },
  publisher: { anyOf: [PARTY, { type: 'null' }], description: 'null: published with no session (the HTTP API, the server), or on another node' },
  receivers: { ...arrayOf(PARTY), description: 'at most 20, on that node' },
  receiverCount: { type: 'integer', description: 'sessions on that node that got it' },
  qos: { type: 'integer' },
  retain: { type: 'boolean' },
  bytes: { type: 'integer' },
  contentType: { type: ['string', 'null'] },
  preview: { type: 'string', description: 'the payload\'s start as text, or in hex' },
});
const SPEC: Record<string, JsonSchema> = {
  id: { type: 'string' },
  filter: { type: 'string', description: 'the topic filter traced, in MQTT form' },
  maxPerSecond: { type: 'integer' },
  node: { type: 'string', description: 'the node that owns the trace: read it there' },
  scope: { type: 'string', enum: ['cluster', 'node'], description: 'cluster: every node traces and reports here' },
};
const ID_PARAM = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9a-f]{16}$' } } };

export function registerTraceRoutes(ctx: RouteContext): void {
  const { http, audit } = ctx;
  const admins = requireAuth(ctx, ['admin']);
  const tracer = new Tracer(ctx.nodeId, ctx.sessions, (tap) => ctx.broker.setTap(tap), ctx.cluster);
  http.addHook('onClose', async () => tracer.stop());
  const scope = ctx.cluster ? 'cluster' : 'node';
  const view = (s: TraceSpec) => ({ id: s.id, filter: s.filter, maxPerSecond: s.maxPerSecond, node: s.owner, scope });

  http.post<{ Body: { filter: string; maxPerSecond?: number } }>(
    '/api/admin/traces',
    {
      preHandler: admins,
      schema: {
        tags: ['admin'],
        operationId: 'openTrace',
        summary: 'Trace a topic filter: every message that passes, with its publisher and receivers',
        description: `At most maxPerSecond events a second per node are kept (the rest are counted as skipped); the last ${TRACE_KEPT} are kept; a trace nobody reads for ${TRACE_IDLE_MS / 1000} s closes; at most ${MAX_TRACES} are open on a node. In a cluster every node traces and reports to the node that opened it, where it is read.`,
        body: {
          type: 'object',
          required: ['filter'],
          additionalProperties: false,
          properties: {
            filter: { type: 'string', minLength: 1, maxLength: 1024, description: 'an MQTT filter (a/+/c, a/#) or a STOMP destination (/topic/a.*.c)' },
            maxPerSecond: { type: 'integer', minimum: 1, maximum: 100, description: 'default 20' },
          },
        },
        response: { 200: okEnvelope(closed(SPEC), 'the trace'), ...errors({ 400: 'not a valid topic filter', 409: 'too many traces are open on this node' }) },
      },
    },
    async (req) => {
      const raw = req.body.filter.trim();
      const filter = raw.startsWith('/topic/') ? topicFromDotted(raw.slice('/topic/'.length)) : raw;
      const problem = filterProblem(filter);
      if (problem) throw badRequest(`filter "${raw.slice(0, 100)}": ${problem}`);
      const spec = tracer.open(filter, req.body.maxPerSecond ?? 20);
      if (!spec) throw new HttpError(409, `${MAX_TRACES} traces are open on this node already; close one (or wait ${TRACE_IDLE_MS / 1000} s for one nobody reads to close)`);
      await audit.record(req, 'trace.open', filter, { maxPerSecond: spec.maxPerSecond });
      return ok(view(spec));
    },
  );

  http.get<{ Params: { id: string }; Querystring: { after?: number } }>(
    '/api/admin/traces/:id',
    {
      preHandler: admins,
      schema: {
        tags: ['admin'],
        operationId: 'readTrace',
        summary: 'The events of a trace after a point (its seq), oldest first; reading keeps it open',
        params: ID_PARAM,
        querystring: { type: 'object', additionalProperties: false, properties: { ...TOKEN_QUERY, after: { type: 'integer', minimum: 0, description: 'the last seq already read' } } },
        response: {
          200: okEnvelope(closed({ ...SPEC, events: arrayOf(EVENT), skipped: { type: 'integer', description: 'events over the cap, not kept' } }), 'the events'),
          ...errors({ 404: 'no such trace on this node (closed, expired, or opened on another node)' }),
        },
      },
    },
    async (req) => {
      const r = tracer.read(req.params.id, req.query.after ?? 0);
      if (!r) throw notFound(`no trace ${req.params.id} on node ${ctx.nodeId}: it was closed, nobody read it for ${TRACE_IDLE_MS / 1000} s, or it was opened on another node`);
      return ok({ ...view(r.spec), events: r.events, skipped: r.skipped });
    },
  );

  http.delete<{ Params: { id: string } }>(
    '/api/admin/traces/:id',
    {
      preHandler: admins,
      schema: {
        tags: ['admin'],
        operationId: 'closeTrace',
        summary: 'Close a trace, on every node',
        params: ID_PARAM,
        response: { 200: okEnvelope(closed({ id: { type: 'string' } }), 'closed'), ...errors({ 404: 'no such trace on this node' }) },
      },
    },
    async (req) => {
      if (!tracer.close(req.params.id)) throw notFound(`no trace ${req.params.id} on node ${ctx.nodeId}`);
      return ok({ id: req.params.id });
    },
  );
}
