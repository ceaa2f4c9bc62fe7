/**
 * The MQTT app integration's token endpoints (their own answer shape: {"code":200,"body":{…}})
 * and the admin endpoints that register apps.
 */
import type { FastifyReply } from 'fastify';
import { AppTokenRefusal, appUserPrefix, type MqttApps } from '../apps/mqtt-apps.js';
import type { RouteContext } from './app.js';
import { notFound, ok } from './envelope.js';
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
        if (err instanceof AppTokenRefusal) return refuse(reply, 401, err.message);
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
      if (!token) return refuse(reply, 401, 'Authorization must hold the app access token from /openapi/rm/app/token');
      try {
        return { code: 200, body: await apps.userToken(token, req.body.username, req.body.expires_in ?? 86_400, req.body.cid) };
      } catch (err) {
        if (err instanceof AppTokenRefusal) return refuse(reply, err.kind === 'bad' ? 401 : 403, err.message);
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
    async (req) => {
      const app = await apps.create(req.body.name);
      await ctx.audit.record(req, 'app.create', `app "${app.name}" (${app.appId})`);
      return ok(app);
    },
  );
  /** A new secret, shown once; the old one and the app tokens got with it stop working. */
  http.post<{ Params: { id: string } }>('/api/apps/:id/rotate-secret', { preHandler: admin }, async (req) => {
    const app = await apps.rotateSecret(req.params.id);
    if (!app) throw notFound(`no MQTT app with id ${req.params.id}`);
    await ctx.audit.record(req, 'app.rotate', `app "${app.name}" (${app.appId})`);
    return ok(app);
  });
  /** Deletes the app and its tokens, and ends the sessions of its users on every node. */
  http.delete<{ Params: { id: string } }>('/api/apps/:id', { preHandler: admin }, async (req) => {
    const id = req.params.id;
    const app = await ctx.store.getApp(id);
    if (!app || !(await apps.delete(id))) throw notFound(`no MQTT app with id ${id}`);
    const sessions = (await ctx.presence.sessions()).filter((s) => s.userId.startsWith(appUserPrefix(id)));
    for (const s of sessions) ctx.presence.kick(s.node, s.sessionId, `the app "${app.name}" was deleted by ${req.principal!.name}`);
    await ctx.audit.record(req, 'app.delete', `app "${app.name}" (${id})`, { sessionsEnded: sessions.length });
    return ok({ appId: id, deleted: true, sessionsEnded: sessions.length });
  });
  http.get('/api/apps', { preHandler: admin }, async () =>
    ok((await apps.list()).map((a) => ({ appId: a.id, name: a.name, appClientId: a.clientId, createdAt: new Date(a.createdAt).toISOString() }))),
  );
}
