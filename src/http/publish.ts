/**
 * POST /api/publish: a back end pushes to any destination, e.g. a media
 * service sending a StrmNotif to /user/{user}/queue/strm.
 */
import type { RouteContext } from './app.js';
import { AppRefusal } from '../core/broker.js';
import { parseDestination, topicProblem } from '../core/destination.js';
import { resolveUserId } from '../core/mailbox.js';
import { createMessage, type CoreMessage, type HeaderList } from '../core/message.js';
import { HttpError, badRequest, forbidden, ok } from './envelope.js';
import { requireAuth } from './app.js';
import { closed, errors, okEnvelope } from './schemas.js';

interface PublishBody {
  destination: string;
  body: unknown;
  headers?: Record<string, string>;
  contentType?: string;
}

export function registerPublishRoute(ctx: RouteContext): void {
  const { http, broker } = ctx;
  http.post<{ Body: PublishBody }>(
    '/api/publish',
    {
      preHandler: requireAuth(ctx, ['admin', 'service']),
      schema: {
        tags: ['publish'],
        operationId: 'publish',
        summary: 'Push a message to any destination',
        description:
          'Destinations as in STOMP: /topic/…, /queue/…, /user/{user}/queue/… (a user id or name), /app/… . `body` is a string (sent as text/plain) or any JSON (sent as its text, application/json) unless contentType says otherwise. ' +
          'A 200 for a topic means stored for every persistent receiver; a queue message is stored before the answer.',
        body: {
          type: 'object',
          required: ['destination', 'body'],
          additionalProperties: false,
          properties: {
            destination: { type: 'string', minLength: 1, maxLength: 1024 },
            body: {},
            headers: { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 64 },
            contentType: { type: 'string', minLength: 1, maxLength: 256 },
          },
        },
        response: {
          200: okEnvelope(
            closed({
              id: { type: ['string', 'null'], description: 'message id (a queue message: q…); null for /app destinations' },
              deliveries: { type: ['integer', 'null'], description: 'sessions it was handed to now (0 for queues); null for /app destinations' },
              stored: { type: 'boolean', description: 'true for a queue message, stored until consumed' },
            }),
            'accepted',
          ),
          ...errors({
            400: 'the body is not what this route takes, the destination is not valid, or the /app handler refused the message',
            403: 'the access rules (aclFile) or the server (`$` topics, chat threads) do not let you publish there; or a role other than admin or service',
            413: 'the body is over maxBodyBytes (or the request over httpBodyLimit)',
          }),
        },
      },
    },
    async (req) => {
      const p = req.principal!;
      const { destination } = req.body;
      const text = typeof req.body.body === 'string' ? req.body.body : JSON.stringify(req.body.body);
      const body = Buffer.from(text, 'utf8');
      if (body.length > ctx.config.maxBodyBytes) {
        throw new HttpError(413, `body is ${body.length} bytes; the limit is ${ctx.config.maxBodyBytes} (maxBodyBytes)`);
      }
      const contentType = req.body.contentType ?? (typeof req.body.body === 'string' ? 'text/plain' : 'application/json');
      const headers: HeaderList = Object.entries(req.body.headers ?? {});
      const parsed = parseDestination(destination);
      if (typeof parsed === 'string') throw badRequest(parsed);
      const base = { body, contentType, headers };
      ctx.metrics.messagesInOf.http.inc();
      let msg: CoreMessage;
      let deliveries: number;
      switch (parsed.kind) {
        case 'topic': {
          const problem = topicProblem(parsed.topic);
          if (problem) throw badRequest(`${destination}: ${problem}`);
          // `$` topics are the server's and chat-thread topics the thread service's, whatever the access rules say.
          const refusal = await broker.publishRefusal(parsed.topic);
          if (refusal) throw forbidden(refusal);
          if (!ctx.acl.allows({ principal: p, clientId: 'http', anonymous: false, protocol: 'http' }, 'publish', parsed.topic)) {
            throw forbidden(`the access rules (aclFile) do not let "${p.name}" publish to ${destination}`);
          }
          msg = createMessage({ ...base, target: { kind: 'topic', topic: parsed.topic } });
          deliveries = broker.publishTopic(msg);
          // 200 means stored for every persistent receiver (cluster mode: MQTT sessions held anywhere); a store failure is a 503.
          await broker.committed(msg);
          break;
        }
        case 'queue':
          msg = createMessage({ ...base, target: { kind: 'queue', name: parsed.name } });
          return ok({ id: 'q' + (await broker.publishQueue(msg)), deliveries: 0, stored: true });
        case 'user': {
          const userId = parsed.who === null ? p.userId : await resolveUserId(ctx.store, ctx.auth, parsed.who);
          msg = createMessage({ ...base, target: { kind: 'user', userId, name: parsed.name } });
          deliveries = broker.publishUser(msg);
          break;
        }
        case 'server': {
          const handler = broker.findApp(destination);
          if (!handler) throw badRequest(`nothing on this server handles ${destination}`);
          try {
            await handler({ sessionId: 'http', principal: p, destination, ...base });
          } catch (err) {
            if (err instanceof AppRefusal) throw badRequest(err.message);
            throw err;
          }
          return ok({ id: null, deliveries: null, stored: false });
        }
      }
      return ok({ id: msg.id, deliveries, stored: false });
    },
  );
}
