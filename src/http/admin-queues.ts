/**
 * Queues and mailboxes for the console: what the store keeps (point-to-point
 * queues, persistent MQTT sessions' stored messages, the message service's
 * undelivered messages per user) with what every node holds live (consumers,
 * messages in memory and in flight, mailbox subscribers, parked messages),
 * and a drill-down into the messages held and unacknowledged.
 */
import type { RouteContext } from './app.js';
import { requireAuth } from './app.js';
import { ok } from './envelope.js';
import { ClusterQuestions } from '../core/cluster-survey.js';
import type { Broker } from '../core/broker.js';
import { TOKEN_QUERY, arrayOf, closed, okEnvelope, type JsonSchema } from './schemas.js';

type Live = ReturnType<Broker['liveFigures']>;

const LIMIT = 200;
const PREVIEW = 256;
const T: JsonSchema = { type: 'string', format: 'date-time' };
const NT: JsonSchema = { type: ['string', 'null'], format: 'date-time' };
const int = (description?: string): JsonSchema => ({ type: 'integer', ...(description ? { description } : {}) });
const MISSING: JsonSchema = arrayOf({ type: 'string', description: 'a node that did not answer in time: its live figures are not here' });

const QUEUE = closed({
  name: { type: 'string' },
  messages: int('kept in the store, not yet acknowledged'),
  claimed: int('claimed by a node: in its memory waiting for a consumer\'s window, or handed out and unacknowledged'),
  waiting: int('not claimed: waiting in the store for a consumer with room'),
  redelivered: int('handed out before and not acknowledged then'),
  oldestAt: NT,
  bytes: int('their bodies'),
  consumers: int('subscriptions on every node that answered'),
  ready: int('claimed and held in memory, not yet handed out'),
  inflight: int('handed to a consumer, not yet acknowledged'),
  nodes: arrayOf({ type: 'string' }),
});
const MQTT_SESSION = closed({
  clientId: { type: 'string' },
  messages: int('stored for the session'),
  sent: int('sent with a packet id, awaiting the client\'s acknowledgement'),
  held: int('not sent yet'),
  oldestAt: NT,
  bytes: int(),
  connected: { type: 'boolean' },
  node: { type: ['string', 'null'], description: 'the node that holds it' },
});
const MAILBOX = closed({
  userId: { type: 'string' },
  user: { type: 'string', description: 'the user\'s name (the id when unknown)' },
  name: { type: 'string', description: 'the mailbox (messages: the message service\'s)' },
  pending: int('stored and not yet delivered (the message service\'s mailbox)'),
  oldestAt: NT,
  subscribers: int('sessions subscribed, on every node that answered'),
  parked: int('left unacknowledged while no session was subscribed, held in memory for the next one'),
});
const QUEUED = closed({
  id: { type: 'string' },
  createdAt: T,
  state: { type: 'string', enum: ['waiting', 'claimed'], description: 'waiting for a consumer, or claimed by a node (held there or unacknowledged)' },
  claimedBy: { type: ['string', 'null'], description: 'the node incarnation (node#epoch)' },
  redelivered: { type: 'boolean' },
  bytes: int(),
  contentType: { type: ['string', 'null'] },
  headers: arrayOf(arrayOf({ type: 'string' })),
  text: { type: ['string', 'null'], description: 'the first 256 bytes as text, or null when they are not UTF-8' },
  hex: { type: 'string', description: 'the first 256 bytes in hex' },
});
const MQTT_QUEUED = closed({
  id: { type: 'string' },
  topic: { type: 'string' },
  qos: int(),
  createdAt: T,
  state: { type: 'string', enum: ['held', 'unacknowledged', 'released'], description: 'not sent yet; sent and awaiting PUBACK/PUBREC; QoS 2 awaiting PUBCOMP' },
  packetId: { type: ['integer', 'null'] },
  bytes: int(),
  text: { type: ['string', 'null'] },
  hex: { type: 'string' },
});
const PENDING = closed({ id: { type: 'string' }, title: { type: 'string' }, createdAt: T, sender: { type: 'string' }, bytes: int(), text: { type: 'string' } });

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
const preview = (body: Buffer) => {
  const head = body.subarray(0, PREVIEW);
  let text: string | null = new TextDecoder('utf-8', { fatal: false }).decode(head);
  if (text.includes('\uFFFD')) text = null;
  return { bytes: body.length, text, hex: head.toString('hex') };
};
const pageQuery = (extra: Record<string, JsonSchema> = {}) => ({
  type: 'object',
  additionalProperties: false,
  properties: { ...TOKEN_QUERY, ...extra, limit: { type: 'integer', minimum: 1, maximum: 500, description: 'default 100' } },
});
const nameParam = (name: string, description: string) => ({ type: 'object', required: [name], properties: { [name]: { type: 'string', minLength: 1, maxLength: 1024, description } } });

export function registerQueueRoutes(ctx: RouteContext): void {
  const { http, store, broker } = ctx;
  const managers = requireAuth(ctx, ['admin', 'service']);
  const admins = requireAuth(ctx, ['admin']);
  const askLive = new ClusterQuestions(ctx.nodeId, ctx.cluster, ctx.presence).define<Record<string, never>, Live>('console.queues?', () => broker.liveFigures());

  http.get(
    '/api/admin/queues',
    {
      preHandler: managers,
      schema: {
        tags: ['admin'],
        operationId: 'queues',
        summary: 'Queues and mailboxes: depth, consumers, oldest message, on every node',
        response: {
          200: okEnvelope(
            closed({ queues: arrayOf(QUEUE), mqttSessions: arrayOf(MQTT_SESSION), mailboxes: arrayOf(MAILBOX), missing: MISSING }),
            'stored figures (the store) with live ones (every node that answered)',
          ),
        },
      },
    },
    async () => {
      const [stored, mqttStored, pending, mqttSessions, live] = await Promise.all([
        store.queueSummaries(LIMIT),
        store.mqttQueueSummaries(LIMIT),
        store.pendingSummaries(LIMIT),
        store.listMqttSessions(),
        askLive({}),
      ]);
      const queues = new Map(stored.map((q) => [q.queue, { name: q.queue, messages: q.messages, claimed: q.claimed, waiting: q.messages - q.claimed, redelivered: q.redelivered, oldestAt: iso(q.oldestAt), bytes: q.bytes, consumers: 0, ready: 0, inflight: 0, nodes: [] as string[] }]));
      const mailboxes = new Map(pending.map((p) => [`${p.receiver}\u0000messages`, { userId: p.receiver, user: p.receiver, name: 'messages', pending: p.pending, oldestAt: iso(p.oldestAt), subscribers: 0, parked: 0 }]));
      for (const [node, figures] of live.answers) {
        for (const f of figures.queues) {
          let q = queues.get(f.name);
          if (!q) queues.set(f.name, (q = { name: f.name, messages: 0, claimed: 0, waiting: 0, redelivered: 0, oldestAt: null, bytes: 0, consumers: 0, ready: 0, inflight: 0, nodes: [] }));
          q.consumers += f.consumers;
          q.ready += f.ready;
          q.inflight += f.inflight;
          q.nodes.push(node);
        }
        for (const f of figures.mailboxes) {
          const key = `${f.userId}\u0000${f.name}`;
          let m = mailboxes.get(key);
          if (!m) mailboxes.set(key, (m = { userId: f.userId, user: f.userId, name: f.name, pending: 0, oldestAt: null, subscribers: 0, parked: 0 }));
          m.subscribers += f.subscribers;
          m.parked += f.parked;
          if (f.oldestParkedAt !== null && (m.oldestAt === null || f.oldestParkedAt < Date.parse(m.oldestAt))) m.oldestAt = iso(f.oldestParkedAt);
        }
      }
      const shown = [...mailboxes.values()].sort((a, b) => b.pending + b.parked - (a.pending + a.parked) || b.subscribers - a.subscribers).slice(0, LIMIT);
      const names = new Map<string, string>();
      for (const id of new Set(shown.map((m) => m.userId))) names.set(id, (await store.getUserById(id).catch(() => null))?.name ?? id);
      for (const m of shown) m.user = names.get(m.userId) ?? m.userId;
      const sessions = new Map(mqttSessions.map((s) => [s.clientId, s]));
      return ok({
        queues: [...queues.values()].sort((a, b) => b.messages - a.messages || b.consumers - a.consumers || a.name.localeCompare(b.name)),
        mqttSessions: mqttStored.map((q) => {
          const s = sessions.get(q.clientId);
          return { clientId: q.clientId, messages: q.messages, sent: q.sent, held: q.messages - q.sent, oldestAt: iso(q.oldestAt), bytes: q.bytes, connected: s !== undefined && s.disconnectedAt === null, node: s?.node ?? null };
        }),
        mailboxes: shown,
        missing: live.missing,
      });
    },
  );

  http.get<{ Params: { name: string }; Querystring: { after?: string; limit?: number } }>(
    '/api/admin/queues/:name/messages',
    {
      preHandler: admins,
      schema: {
        tags: ['admin'],
        operationId: 'queueMessages',
        summary: 'A queue\'s messages in the store, oldest first, a page at a time; looking changes nothing',
        params: nameParam('name', 'the queue (/queue/{name})'),
        querystring: pageQuery({ after: { type: 'string', pattern: '^[0-9]{1,16}$', description: 'the last id of the page before' } }),
        response: { 200: okEnvelope(closed({ queue: { type: 'string' }, messages: arrayOf(QUEUED) }), 'the messages') },
      },
    },
    async (req) => {
      const rows = await store.peekQueue(req.params.name, req.query.limit ?? 100, req.query.after);
      return ok({
        queue: req.params.name,
        messages: rows.map((r) => ({ id: r.id, createdAt: iso(r.createdAt)!, state: r.claimedBy === null ? 'waiting' : 'claimed', claimedBy: r.claimedBy, redelivered: r.redelivered, contentType: r.contentType, headers: r.headers, ...preview(r.body) })),
      });
    },
  );

  http.get<{ Params: { clientId: string }; Querystring: { limit?: number } }>(
    '/api/admin/mqtt-sessions/:clientId/messages',
    {
      preHandler: admins,
      schema: {
        tags: ['admin'],
        operationId: 'mqttSessionMessages',
        summary: 'The messages stored for a persistent MQTT session, oldest first: held (not sent) and unacknowledged',
        params: nameParam('clientId', 'the MQTT client id'),
        querystring: pageQuery(),
        response: { 200: okEnvelope(closed({ clientId: { type: 'string' }, messages: arrayOf(MQTT_QUEUED) }), 'the messages') },
      },
    },
    async (req) => {
      const rows = await store.loadMqttQueue(req.params.clientId, req.query.limit ?? 100);
      return ok({
        clientId: req.params.clientId,
        messages: rows.map((r) => ({ id: r.id, topic: r.topic, qos: r.qos, createdAt: iso(r.createdAt)!, state: r.packetId === null ? 'held' : r.released ? 'released' : 'unacknowledged', packetId: r.packetId, ...preview(r.body) })),
      });
    },
  );

  http.get<{ Params: { userId: string }; Querystring: { limit?: number } }>(
    '/api/admin/mailboxes/:userId/messages',
    {
      preHandler: admins,
      schema: {
        tags: ['admin'],
        operationId: 'mailboxMessages',
        summary: 'The message service\'s messages stored for a user and not yet delivered, oldest first',
        params: nameParam('userId', 'the user id'),
        querystring: pageQuery(),
        response: { 200: okEnvelope(closed({ userId: { type: 'string' }, messages: arrayOf(PENDING) }), 'the messages') },
      },
    },
    async (req) => {
      const rows = await store.pendingFor(req.params.userId, req.query.limit ?? 100);
      return ok({
        userId: req.params.userId,
        messages: rows.map((m) => ({ id: m.id, title: m.title, createdAt: iso(m.createdAt)!, sender: m.sender, bytes: Buffer.byteLength(m.content), text: m.content.slice(0, PREVIEW) })),
      });
    },
  );
}
