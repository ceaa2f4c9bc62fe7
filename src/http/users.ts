/**
 * Admin management of users: list (all, or a page found by name), create,
 * change role/password/disabled, delete, revoke tokens. The last active
 * admin is never taken away (disabled, demoted or deleted): refused with 409.
 * Every change is written to the audit log.
 */
import type { RouteContext } from './app.js';
import { DuplicateError, ROLES, type Role, type UserRecord } from '../store/store.js';
import { HttpError, notFound, ok } from './envelope.js';
import { requireAuth } from './app.js';
import { TOKEN_QUERY, arrayOf, closed, errors, okEnvelope, ref } from './schemas.js';

const USER_ID = { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'user id' } } };

/** User names appear in destinations (`/user/{name}/queue/x`), so no `/`, spaces or wildcards. */
export const USER_NAME_PATTERN = '^[A-Za-z0-9._@-]{1,64}$';

export function publicUser(u: UserRecord) {
  return { id: u.id, name: u.name, role: u.role, disabled: u.disabled, createdAt: u.createdAt };
}

/** Whether a patch could leave the server without an active admin (it disables someone, or gives someone a lesser role). */
function takesAdmin(patch: { role?: Role; disabled?: boolean }): boolean {
  return patch.disabled === true || (patch.role !== undefined && patch.role !== 'admin');
}

const isActiveAdmin = (u: UserRecord): boolean => u.role === 'admin' && !u.disabled;

/** A user as the audit log names them. */
const userWords = (u: UserRecord): string => `user "${u.name}" (id ${u.id})`;

/** Runs tasks one after another. */
class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

export function registerUserRoutes(ctx: RouteContext): void {
  const { http, store, auth, audit } = ctx;
  const admin = requireAuth(ctx, ['admin']);
  const adminChanges = new Serial();

  /** Applies a patch (and a new password); a new password or a disabled account ends every session of the user. */
  const change = async (id: string, patch: { role?: Role; disabled?: boolean }, password: string | undefined): Promise<UserRecord> => {
    if (!(await store.getUserById(id))) throw notFound(`no user with id ${id}`);
    if (password !== undefined) await auth.setPassword(id, password);
    const user = (await store.updateUser(id, patch))!;
    auth.invalidateUser(id);
    if (password !== undefined || patch.disabled === true) await auth.revokeUser(id);
    return user;
  };

  /**
   * A change that may take away an admin (a patch that disables or demotes,
   * or a deletion): refused (409) when it would leave no active admin, since
   * then nobody could manage users again except from the command line.
   * Checked before, and once more after, the change: another node may have
   * taken away another admin meanwhile, and then this change is undone. A
   * deletion first disables the user, the step that can be undone, and
   * deletes only when that left an admin.
   */
  const guardAdmin = async <T>(id: string, verb: 'disabling' | 'demoting' | 'deleting', patch: { role?: Role; disabled?: boolean }, then: () => Promise<T>): Promise<T> => {
    const target = await store.getUserById(id);
    if (!target) throw notFound(`no user with id ${id}`);
    if (!isActiveAdmin(target)) return then();
    const lastAdmin = (): HttpError =>
      new HttpError(409, `"${target.name}" is the last active admin: ${verb} it would leave nobody able to manage users; make another user admin first`);
    if ((await store.listUsers()).filter(isActiveAdmin).length <= 1) throw lastAdmin();
    const before = { role: target.role, disabled: target.disabled };
    await store.updateUser(id, patch);
    if ((await store.listUsers()).filter(isActiveAdmin).length === 0) {
      await store.updateUser(id, before);
      auth.invalidateUser(id);
      throw lastAdmin();
    }
    return then();
  };

  http.get(
    '/api/users',
    {
      preHandler: admin,
      schema: { tags: ['users'], operationId: 'listUsers', summary: 'List users', response: { 200: okEnvelope(arrayOf(ref('User')), 'every user') } },
    },
    async () => ok((await store.listUsers()).map(publicUser)),
  );

  /** A page of users, in creation order, whose names hold `q` (any case); the console's Users page. */
  http.get<{ Querystring: { q?: string; page?: number; size?: number } }>(
    '/api/users/search',
    {
      preHandler: admin,
      schema: {
        tags: ['users'],
        operationId: 'searchUsers',
        summary: 'A page of users whose names hold q (any case), in creation order',
        response: {
          200: okEnvelope(
            closed({
              records: arrayOf(ref('User')),
              total: { type: 'integer' },
              current: { type: 'integer', description: 'this page, from 1' },
              size: { type: 'integer' },
              pages: { type: 'integer' },
            }),
            'the page',
          ),
        },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...TOKEN_QUERY,
            q: { type: 'string', maxLength: 64 },
            page: { type: 'integer', minimum: 1, maximum: 1_000_000 },
            size: { type: 'integer', minimum: 1, maximum: 100 },
          },
        },
      },
    },
    async (req) => {
      const { q, page = 1, size = 20 } = req.query;
      const result = await store.queryUsers({ page, size, ...(q ? { search: q } : {}) });
      return ok({ records: result.items.map(publicUser), total: result.total, current: page, size, pages: Math.ceil(result.total / size) });
    },
  );

  http.post<{ Body: { name: string; password: string; role?: Role } }>(
    '/api/users',
    {
      preHandler: admin,
      schema: {
        tags: ['users'],
        operationId: 'createUser',
        summary: 'Create a user',
        description: 'The name may hold letters, digits and . _ @ - (it appears in destinations such as /user/{name}/queue/x). The role is user unless given.',
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
        response: { 200: okEnvelope(ref('User'), 'the new user'), ...errors({ 409: 'a user with this name exists' }) },
      },
    },
    async (req) => {
      try {
        const user = await auth.createUser(req.body.name, req.body.password, req.body.role ?? 'user');
        await audit.record(req, 'user.create', userWords(user), { role: user.role });
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
        tags: ['users'],
        operationId: 'updateUser',
        summary: "Change a user's role, password or disabled flag",
        description: 'A new password, or disabling the user, revokes every token of the user and closes their sockets. The last active admin cannot be disabled or demoted.',
        params: USER_ID,
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
        response: {
          200: okEnvelope(ref('User'), 'the user as changed'),
          ...errors({ 404: 'no user with this id', 409: 'the change would leave no active admin: make another user admin first' }),
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const patch: { role?: Role; disabled?: boolean } = {};
      if (req.body.role !== undefined) patch.role = req.body.role;
      if (req.body.disabled !== undefined) patch.disabled = req.body.disabled;
      // Changes that may take away an admin run one at a time, so two of them cannot each leave the other admin last.
      const apply = (): Promise<UserRecord> => change(id, patch, req.body.password);
      const verb = patch.disabled === true ? 'disabling' : 'demoting';
      const user = await (takesAdmin(patch) ? adminChanges.run(() => guardAdmin(id, verb, patch, apply)) : apply());
      // What changed, never the password itself.
      await audit.record(req, 'user.update', userWords(user), { ...patch, ...(req.body.password !== undefined ? { password: 'reset' } : {}) });
      return ok(publicUser(user));
    },
  );

  /**
   * Kills every token of the user and ends every session they have, on
   * every node: those opened with a token, a JWT, a password or a client
   * certificate alike.
   */
  http.post<{ Params: { id: string } }>(
    '/api/users/:id/revoke-tokens',
    {
      preHandler: admin,
      schema: {
        tags: ['users'],
        operationId: 'revokeUserTokens',
        summary: 'End every token and every session of a user',
        description: 'Also refuses the JWTs issued for the user so far (by their iat), and ends every session of the user on every node, whatever it logged in with (token, JWT, password, client certificate).',
        params: USER_ID,
        response: {
          200: okEnvelope(closed({ revoked: { type: 'integer', description: 'login tokens ended' } }), 'done'),
          ...errors({ 404: 'no user with this id' }),
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const user = await store.getUserById(id);
      if (!user) throw notFound(`no user with id ${id}`);
      const revoked = await auth.revokeUser(id);
      await audit.record(req, 'user.revoke', userWords(user), { tokens: revoked });
      return ok({ revoked });
    },
  );

  /** Deletes a user with their tokens and ends their sessions; never the last active admin. */
  http.delete<{ Params: { id: string } }>(
    '/api/users/:id',
    {
      preHandler: admin,
      schema: {
        tags: ['users'],
        operationId: 'deleteUser',
        summary: 'Delete a user with their tokens, ending their sessions',
        params: USER_ID,
        response: {
          200: okEnvelope(closed({ id: { type: 'string' }, deleted: { type: 'boolean', const: true } }), 'deleted'),
          ...errors({ 404: 'no user with this id', 409: 'the last active admin: make another user admin first' }),
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const user = await store.getUserById(id);
      if (!user) throw notFound(`no user with id ${id}`);
      await adminChanges.run(() =>
        guardAdmin(id, 'deleting', { disabled: true }, async () => {
          await auth.revokeUser(id);
          await store.deleteUser(id);
          auth.invalidateUser(id);
        }),
      );
      await audit.record(req, 'user.delete', userWords(user), { role: user.role });
      return ok({ id, deleted: true });
    },
  );
}
