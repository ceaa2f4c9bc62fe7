/** Admin management of users: list, create, change role/password/disabled, revoke tokens. */
import type { HeraldContext } from '../context.js';
import { DuplicateError, ROLES, type Role, type UserRecord } from '../store/store.js';
import { HttpError, notFound, ok } from './envelope.js';
import { requireAuth } from './app.js';

/** User names appear in destinations (`/user/{name}/queue/x`), so no `/`, spaces or wildcards. */
export const USER_NAME_PATTERN = '^[A-Za-z0-9._@-]{1,64}$';

export function publicUser(u: UserRecord) {
  return { id: u.id, name: u.name, role: u.role, disabled: u.disabled, createdAt: u.createdAt };
}

export function registerUserRoutes(ctx: HeraldContext): void {
  const { http, store, auth } = ctx;
  const admin = requireAuth(ctx, ['admin']);

  http.get('/api/users', { preHandler: admin }, async () => ok((await store.listUsers()).map(publicUser)));

  http.post<{ Body: { name: string; password: string; role?: Role } }>(
    '/api/users',
    {
      preHandler: admin,
      schema: {
        body: {
          type: 'object',
          required: ['name', 'password'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', pattern: USER_NAME_PATTERN },
            password: { type: 'string', minLength: 8, maxLength: 1024 },
            role: { type: 'string', enum: [...ROLES] },
          },
        },
      },
    },
    async (req) => {
      try {
        const user = await auth.createUser(req.body.name, req.body.password, req.body.role ?? 'user');
        return ok(publicUser(user));
      } catch (err) {
        if (err instanceof DuplicateError) throw new HttpError(409, err.message);
        throw err;
      }
    },
  );

  http.patch<{ Params: { id: string }; Body: { role?: Role; password?: string; disabled?: boolean } }>(
    '/api/users/:id',
    {
      preHandler: admin,
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            role: { type: 'string', enum: [...ROLES] },
            password: { type: 'string', minLength: 8, maxLength: 1024 },
            disabled: { type: 'boolean' },
          },
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      if (!(await store.getUserById(id))) throw notFound(`no user with id ${id}`);
      if (req.body.password !== undefined) await auth.setPassword(id, req.body.password);
      const patch: { role?: Role; disabled?: boolean } = {};
      if (req.body.role !== undefined) patch.role = req.body.role;
      if (req.body.disabled !== undefined) patch.disabled = req.body.disabled;
      const user = (await store.updateUser(id, patch))!;
      auth.invalidateUser(id);
      // A new password or a disabled account ends every session of the user.
      if (req.body.password !== undefined || req.body.disabled === true) await auth.revokeUser(id);
      return ok(publicUser(user));
    },
  );

  http.post<{ Params: { id: string } }>('/api/users/:id/revoke-tokens', { preHandler: admin }, async (req) => {
    const { id } = req.params;
    if (!(await store.getUserById(id))) throw notFound(`no user with id ${id}`);
    return ok({ revoked: await auth.revokeUser(id) });
  });
}
