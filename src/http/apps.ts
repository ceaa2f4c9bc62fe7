/**
 * The MQTT app integration's token endpoints (their own answer shape: {"code":200,"body":{…}})
 * and the admin endpoints that register apps.
 */
import type { FastifyReply } from 'fastify';
import { AppTokenRefusal, appUserPrefix, type MqttApps } from '../apps/mqtt-apps.js';
import type { RouteContext } from './app.js';
import { notFound, ok } from './envelope.js';
import { requireAuth } from './app.js';
import { arrayOf, closed, errorAnswer, errors, okEnvelope, type JsonSchema } from './schemas.js';

/** That integration's answers: `{"code":200,"body":{access_token, expires_in}}`, and its refusals with `body: null`. */
const TOKEN_ANSWER: JsonSchema = {
  description: 'the token, in the shape the MQTT integration expects (not the envelope)',
  ...closed({
    code: { type: 'integer', enum: [200] },
    body: closed({ access_token: { type: 'string' }, expires_in: { type: 'integer', description: 'seconds' } }),
  }),
};
const refusal = (description: string): JsonSchema => ({
  description,
  ...closed({ code: { type: 'integer', description: 'the HTTP status' }, message: { type: 'string' }, body: { type: 'null' } }),
});

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
        tags: ['mqtt apps'],
        operationId: 'appToken',
        summary: 'An app access token for an app id and secret',
        description: 'Answers `{"code":200,"body":{…}}` (the integration\'s shape); a request that is not valid JSON or lacks a field gets the usual error envelope.',
        body: {
          type: 'object',
          required: ['appClientId', 'appClientSecret'],
          properties: { appClientId: { type: 'string', minLength: 1, maxLength: 200 }, appClientSecret: { type: 'string', minLength: 1, maxLength: 200 } },
        },
        response: {
          200: TOKEN_ANSWER,
          401: refusal('unknown app id or wrong secret'),
          400: errorAnswer('the body is not valid JSON or lacks appClientId/appClientSecret'),
          503: errorAnswer('the store is unavailable; try again shortly'),
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
        tags: ['mqtt apps'],
        operationId: 'appUserToken',
        summary: 'A user token for MQTT, issued by an app',
        description:
          'Authorised by the app access token (`Authorization: Bearer …`, or the token alone). The device connects over MQTT with client id `cid` ({deviceId}@{appId}), user name `username` and this token as password. ' +
          'Answers in the integration\'s shape, like /openapi/rm/app/token.',
        security: [{ appToken: [] }],
        body: {
          type: 'object',
          required: ['username', 'cid'],
          properties: {
            username: { type: 'string', minLength: 1, maxLength: 128 },
            expires_in: { type: 'integer', minimum: 1 },
            cid: { type: 'string', minLength: 3, maxLength: 256, description: '{deviceId}@{appId}' },
          },
        },
        response: {
          200: TOKEN_ANSWER,
          401: refusal('no app access token, or an unknown or expired one'),
          403: refusal('cid is not {deviceId}@{appId} of this app'),
          400: errorAnswer('the body is not valid JSON or lacks username/cid'),
          503: errorAnswer('the store is unavailable; try again shortly'),
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
      schema: {
        tags: ['mqtt apps'],
        operationId: 'createApp',
        summary: 'Register an MQTT app',
        description: 'The app secret is shown once, in this answer; only its hash is stored.',
        body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 100 } } },
        response: {
          200: okEnvelope(
            closed({ appId: { type: 'string' }, appClientId: { type: 'string' }, appClientSecret: { type: 'string', description: 'shown once' }, name: { type: 'string' } }),
            'the new app',
          ),
        },
      },
    },
    // The secret is shown once, here; only its hash is stored.
    async (req) => {
      const app = await apps.create(req.body.name);
      await ctx.audit.record(req, 'app.create', `app "${app.name}" (${app.appId})`);
      return ok(app);
    },
  );
  const APP_ID = { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'appId' } } };
  /** A new secret, shown once; the old one and the app tokens got with it stop working. */
  http.post<{ Params: { id: string } }>(
    '/api/apps/:id/rotate-secret',
    {
      preHandler: admin,
      schema: {
        tags: ['mqtt apps'],
        operationId: 'rotateAppSecret',
        summary: "Give an app a new secret (shown once); the old one and the app tokens got with it stop working",
        description: 'User tokens already issued keep working.',
        params: APP_ID,
        response: {
          200: okEnvelope(
            closed({ appId: { type: 'string' }, appClientId: { type: 'string' }, appClientSecret: { type: 'string', description: 'shown once' }, name: { type: 'string' } }),
            'the app with its new secret',
          ),
          ...errors({ 404: 'no MQTT app with this id' }),
        },
      },
    },
    async (req) => {
      const app = await apps.rotateSecret(req.params.id);
      if (!app) throw notFound(`no MQTT app with id ${req.params.id}`);
      await ctx.audit.record(req, 'app.rotate', `app "${app.name}" (${app.appId})`);
      return ok(app);
    },
  );
  /** Deletes the app and its tokens, and ends the sessions of its users on every node. */
  http.delete<{ Params: { id: string } }>(
    '/api/apps/:id',
    {
      preHandler: admin,
      schema: {
        tags: ['mqtt apps'],
        operationId: 'deleteApp',
        summary: 'Delete an app with its tokens, ending the sessions of its users on every node',
        params: APP_ID,
        response: {
          200: okEnvelope(closed({ appId: { type: 'string' }, deleted: { type: 'boolean', const: true }, sessionsEnded: { type: 'integer' } }), 'deleted'),
          ...errors({ 404: 'no MQTT app with this id' }),
        },
      },
    },
    async (req) => {
      const id = req.params.id;
      const app = await ctx.store.getApp(id);
      if (!app || !(await apps.delete(id))) throw notFound(`no MQTT app with id ${id}`);
      const sessions = (await ctx.presence.sessions()).filter((s) => s.userId.startsWith(appUserPrefix(id)));
      for (const s of sessions) ctx.presence.kick(s.node, s.sessionId, `the app "${app.name}" was deleted by ${req.principal!.name}`);
      await ctx.audit.record(req, 'app.delete', `app "${app.name}" (${id})`, { sessionsEnded: sessions.length });
      return ok({ appId: id, deleted: true, sessionsEnded: sessions.length });
    },
  );
  http.get(
    '/api/apps',
    {
      preHandler: admin,
      schema: {
        tags: ['mqtt apps'],
        operationId: 'listApps',
        summary: 'List MQTT apps',
        response: {
          200: okEnvelope(
            arrayOf(closed({ appId: { type: 'string' }, name: { type: 'string' }, appClientId: { type: 'string' }, createdAt: { type: 'string', format: 'date-time' } })),
            'the apps (without secrets)',
          ),
        },
      },
    },
    async () => ok((await apps.list()).map((a) => ({ appId: a.id, name: a.name, appClientId: a.clientId, createdAt: new Date(a.createdAt).toISOString() }))),
  );
}
