/** UserStore and TokenStore on PostgreSQL (contract: ../users.ts). */
import { DuplicateError } from '../errors.js';
import { containsPattern, rowId, toToken, toUser, type TokenRow, type UserRow } from '../rows.js';
import type { TokenStore, UserRecord, UserStore } from '../users.js';
import { isUniqueViolation, type Param, type PgHandle } from './pool.js';

export function postgresUsers(pg: PgHandle): UserStore & TokenStore {
  const userById = async (n: number): Promise<UserRecord | null> => {
    const r = (await pg.rows<UserRow>('SELECT * FROM users WHERE id = $1', [n]))[0];
    return r ? toUser(r) : null;
  };

  return {
    async createUser(user) {
      try {
        const rows = await pg.rows<UserRow>('INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING *', [
          user.name,
          user.role,
          user.passwordHash,
          user.createdAt,
        ]);
        return toUser(rows[0]!);
      } catch (err) {
        if (isUniqueViolation(err)) throw new DuplicateError(`a user named "${user.name}" already exists`);
        throw err;
      }
    },

    async getUserById(id) {
      const n = rowId(id);
      return n === null ? null : userById(n);
    },

    async getUserByName(name) {
      const r = (await pg.rows<UserRow>('SELECT * FROM users WHERE name = $1', [name]))[0];
      return r ? toUser(r) : null;
    },

    async listUsers() {
      return (await pg.rows<UserRow>('SELECT * FROM users ORDER BY id')).map(toUser);
    },

    async countUsers() {
      return (await pg.rows<{ n: number }>('SELECT COUNT(*)::int AS n FROM users'))[0]!.n;
    },

    async queryUsers(q) {
      const where = q.search ? "WHERE name ILIKE $1 ESCAPE '\\'" : '';
      const args: Param[] = q.search ? [containsPattern(q.search)] : [];
      const total = (await pg.rows<{ n: number }>(`SELECT COUNT(*)::int AS n FROM users ${where}`, args))[0]!.n;
      const n = args.length;
      const rows = await pg.rows<UserRow>(`SELECT * FROM users ${where} ORDER BY id LIMIT $${n + 1} OFFSET $${n + 2}`, [...args, q.size, (q.page - 1) * q.size]);
      return { items: rows.map(toUser), total, page: q.page, size: q.size };
    },

    async updateUser(id, patch) {
      const n = rowId(id);
      if (n === null) return null;
      const sets: string[] = [];
      const args: Param[] = [];
      if (patch.role !== undefined) (args.push(patch.role), sets.push(`role = $${args.length}`));
      if (patch.passwordHash !== undefined) (args.push(patch.passwordHash), sets.push(`password_hash = $${args.length}`));
      if (patch.disabled !== undefined) (args.push(patch.disabled), sets.push(`disabled = $${args.length}`));
      if (patch.tokensValidAfter !== undefined) (args.push(patch.tokensValidAfter), sets.push(`tokens_valid_after = $${args.length}`));
      if (sets.length === 0) return userById(n);
      args.push(n);
      const r = (await pg.rows<UserRow>(`UPDATE users SET ${sets.join(', ')} WHERE id = $${args.length} RETURNING *`, args))[0];
      return r ? toUser(r) : null;
    },

    async deleteUser(id) {
      const n = rowId(id);
      if (n === null) return false;
      return pg.tx(async (c) => {
        await c.query('DELETE FROM tokens WHERE user_id = $1', [String(n)]);
        return ((await c.query('DELETE FROM users WHERE id = $1', [n])).rowCount ?? 0) > 0;
      });
    },

    async insertToken(t) {
      await pg.rows('INSERT INTO tokens (hash, user_id, created_at, last_used_at, expires_at, idle_expiry) VALUES ($1, $2, $3, $4, $5, $6)', [
        t.hash,
        t.userId,
        t.createdAt,
        t.lastUsedAt,
        t.expiresAt,
        t.idleExpiry,
      ]);
    },

    async getToken(hash) {
      const r = (await pg.rows<TokenRow>('SELECT * FROM tokens WHERE hash = $1', [hash]))[0];
      return r ? toToken(r) : null;
    },

    async touchToken(hash, lastUsedAt) {
      await pg.rows('UPDATE tokens SET last_used_at = $1 WHERE hash = $2 AND last_used_at < $1', [lastUsedAt, hash]);
    },

    async deleteToken(hash) {
      return (await pg.count('DELETE FROM tokens WHERE hash = $1', [hash])) > 0;
    },

    async deleteTokensOfUser(userId) {
      return (await pg.rows<{ hash: string }>('DELETE FROM tokens WHERE user_id = $1 RETURNING hash', [userId])).map((r) => r.hash);
    },

    async deleteDeadTokens(idleBefore, now) {
      return pg.count('DELETE FROM tokens WHERE (idle_expiry AND last_used_at < $1) OR (expires_at IS NOT NULL AND expires_at <= $2)', [idleBefore, now]);
    },
  };
}
