/**
 * The MQTT app integration's token endpoints (their own answer shape: {"code":200,"body":{…}})
 * and the admin endpoints that register apps.
 */
import type { FastifyReply } from 'fastify';
import { AppTokenRefusal, type MqttApps } from '../apps/mqtt-apps.js';
import type { RouteContext } from './app.js';
import { ok } from './envelope.js';
import { requireAuth } from './app.js';

/** Errors in that integration's shape, with the HTTP status as code. */
function refuse(reply: FastifyReply, status: number, message: string): { code: number; message: string; body: null } {
  void reply.code(status);
  return { code: status, message, body: null };
}

export function registerAppRoutes(ctx: RouteContext, apps: MqttApps): void {
  const { http } = ctx;

  http.post<{ Body: { appClientId: string; appClientSecret: string } }>(
    '/openapi/rm/app/token',
    {
      schema: {
        body: {
          type: 'object',
          required: ['appClientId', 'appClientSecret'],
          properties: { appClientId: { type: 'string', minLength: 1, maxLength: 200 }, appClientSecret: { type: 'string', minLength: 1, maxLength: 200 } },
        },
      },
    },
    async (req, reply) => {
      try {
        return { code: 200, body: await apps.appToken(req.body.appClientId, req.body.appClientSecret) };
      } catch (err) {
        if (err instanceof AppTokenRefusal) {
          ctx.metrics.authFailed('http', 'app_token');
          return refuse(reply, 401, err.message);
        }
        throw err;
      }
    },
  );

  http.post<{ Body: { username: string; expires_in?: number; cid: string } }>(
    '/openapi/rm/user/token',
    {
      schema: {
        body: {
          type: 'object',
          required: ['username', 'cid'],
          properties: {
            username: { type: 'string', minLength: 1, maxLength: 128 },
            expires_in: { type: 'integer', minimum: 1 },
            cid: { type: 'string', minLength: 3, maxLength: 256 },
          },
        },
      },
    },
    async (req, reply) => {
      const raw = req.headers.authorization;
      const token = typeof raw === 'string' ? raw.replace(/^Bearer\s+/i, '').trim() : '';
      if (!token) {
        ctx.metrics.authFailed('http', 'no_credentials');
        return refuse(reply, 401, 'Authorization must hold the app access token from /openapi/rm/app/token');
      }
      try {
        return { code: 200, body: await apps.userToken(token, req.body.username, req.body.expires_in ?? 86_400, req.body.cid) };
      } catch (err) {
        if (err instanceof AppTokenRefusal) {
          // A good app token asking for a client id of another app is no failed authentication.
          if (err.kind === 'bad') ctx.metrics.authFailed('http', 'app_token');
          return refuse(reply, err.kind === 'bad' ? 401 : 403, err.message);
        }
        throw err;
      }
    },
  );

  const admin = requireAuth(ctx, ['admin']);
  http.post<{ Body: { name: string } }>(
    '/api/apps',
    {
      preHandler: admin,
      schema: { body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 100 } } } },
    },
    // The secret is shown once, here; only its hash is stored.
    async (req) => ok(await apps.create(req.body.name)),
  );
  http.get('/api/apps', { preHandler: admin }, async () =>
    ok((await apps.list()).map((a) => ({ appId: a.id, name: a.name, appClientId: a.clientId, createdAt: new Date(a.createdAt).toISOString() }))),
  );
}
