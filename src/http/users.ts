/** Admin management of users: list, create, change role/password/disabled, revoke tokens. */
import type { RouteContext } from './app.js';
import { DuplicateError, ROLES, type Role, type UserRecord } from '../store/store.js';
import { HttpError, notFound, ok } from './envelope.js';
import { requireAuth } from './app.js';
import { arrayOf, closed, errors, okEnvelope, ref } from './schemas.js';

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
  const { http, store, auth } = ctx;
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
   * A patch that may take away an admin: refused (409) when it would leave no
   * active admin, since then nobody could manage users again except from the
   * command line. Checked before, and once more after, the change: another
   * node may have disabled another admin meanwhile, and then this change is undone.
   */
  const changeAdmin = async (id: string, patch: { role?: Role; disabled?: boolean }, password: string | undefined): Promise<UserRecord> => {
    const target = await store.getUserById(id);
    if (!target) throw notFound(`no user with id ${id}`);
    const lastAdmin = (): HttpError =>
      new HttpError(
        409,
        `"${target.name}" is the last active admin: ${patch.disabled === true ? 'disabling' : 'demoting'} it would leave nobody able to manage users; make another user admin first`,
      );
    if (isActiveAdmin(target) && (await store.listUsers()).filter(isActiveAdmin).length <= 1) throw lastAdmin();
    if (!isActiveAdmin(target)) return change(id, patch, password);
    const before = { role: target.role, disabled: target.disabled };
    await store.updateUser(id, patch);
    if ((await store.listUsers()).filter(isActiveAdmin).length === 0) {
      await store.updateUser(id, before);
      auth.invalidateUser(id);
      throw lastAdmin();
    }
    return change(id, patch, password);
  };

  http.get(
    '/api/users',
    {
      preHandler: admin,
      schema: { tags: ['users'], operationId: 'listUsers', summary: 'List users', response: { 200: okEnvelope(arrayOf(ref('User')), 'every user') } },
    },
    async () => ok((await store.listUsers()).map(publicUser)),
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
      const user = await (takesAdmin(patch) ? adminChanges.run(() => changeAdmin(id, patch, req.body.password)) : change(id, patch, req.body.password));
      return ok(publicUser(user));
    },
  );

  http.post<{ Params: { id: string } }>(
    '/api/users/:id/revoke-tokens',
    {
      preHandler: admin,
      schema: {
        tags: ['users'],
        operationId: 'revokeUserTokens',
        summary: 'End every token of a user',
        description: 'Also refuses the JWTs issued for the user so far (by their iat), and closes the sockets using any of them.',
        params: USER_ID,
        response: {
          200: okEnvelope(closed({ revoked: { type: 'integer', description: 'login tokens ended' } }), 'done'),
          ...errors({ 404: 'no user with this id' }),
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      if (!(await store.getUserById(id))) throw notFound(`no user with id ${id}`);
      return ok({ revoked: await auth.revokeUser(id) });
    },
  );
}
