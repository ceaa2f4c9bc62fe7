/** UserStore and TokenStore on SQLite (contract: ../users.ts). */
import type Database from 'better-sqlite3';
import { DuplicateError } from '../errors.js';
import { containsPattern, rowId, toToken, toUser, type TokenRow, type UserRow } from '../rows.js';
import type { TokenStore, UserStore } from '../users.js';

export function sqliteUsers(db: Database.Database): UserStore & TokenStore {
  const stmt = {
    insertUser: db.prepare<[string, string, string, number]>(
      'INSERT INTO users (name, role, password_hash, disabled, created_at) VALUES (?, ?, ?, 0, ?)',
    ),
    userById: db.prepare<[number], UserRow>('SELECT * FROM users WHERE id = ?'),
    userByName: db.prepare<[string], UserRow>('SELECT * FROM users WHERE name = ?'),
    listUsers: db.prepare<[], UserRow>('SELECT * FROM users ORDER BY id'),
    countUsers: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM users'),
    deleteUser: db.prepare<[number]>('DELETE FROM users WHERE id = ?'),
    insertToken: db.prepare<[string, string, number, number, number | null, number]>(
      'INSERT INTO tokens (hash, user_id, created_at, last_used_at, expires_at, idle_expiry) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    getToken: db.prepare<[string], TokenRow>('SELECT * FROM tokens WHERE hash = ?'),
    touchToken: db.prepare<[number, string, number]>('UPDATE tokens SET last_used_at = ? WHERE hash = ? AND last_used_at < ?'),
    deleteToken: db.prepare<[string]>('DELETE FROM tokens WHERE hash = ?'),
    tokensOfUser: db.prepare<[string], { hash: string }>('SELECT hash FROM tokens WHERE user_id = ?'),
    deleteTokensOfUser: db.prepare<[string]>('DELETE FROM tokens WHERE user_id = ?'),
    deleteDeadTokens: db.prepare<[number, number]>(
      'DELETE FROM tokens WHERE (idle_expiry = 1 AND last_used_at < ?) OR (expires_at IS NOT NULL AND expires_at <= ?)',
    ),
  };

  return {
    async createUser(user) {
      try {
        const info = stmt.insertUser.run(user.name, user.role, user.passwordHash, user.createdAt);
        return toUser(stmt.userById.get(Number(info.lastInsertRowid))!);
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
          throw new DuplicateError(`a user named "${user.name}" already exists`);
        }
        throw err;
      }
    },

    async getUserById(id) {
      const n = rowId(id);
      if (n === null) return null;
      const r = stmt.userById.get(n);
      return r ? toUser(r) : null;
    },

    async getUserByName(name) {
      const r = stmt.userByName.get(name);
      return r ? toUser(r) : null;
    },

    async listUsers() {
      return stmt.listUsers.all().map(toUser);
    },

    async countUsers() {
      return stmt.countUsers.get()!.n;
    },

    async queryUsers(q) {
      // LIKE ignores ASCII case in SQLite, as ILIKE does in PostgreSQL.
      const where = q.search ? "WHERE name LIKE ? ESCAPE '\\'" : '';
      const args = q.search ? [containsPattern(q.search)] : [];
      return db.transaction(() => {
        const total = db.prepare<unknown[], { n: number }>(`SELECT COUNT(*) AS n FROM users ${where}`).get(...args)!.n;
        const rows = db.prepare<unknown[], UserRow>(`SELECT * FROM users ${where} ORDER BY id LIMIT ? OFFSET ?`).all(...args, q.size, (q.page - 1) * q.size);
        return { items: rows.map(toUser), total, page: q.page, size: q.size };
      })();
    },

    async updateUser(id, patch) {
      const n = rowId(id);
      if (n === null) return null;
      const sets: string[] = [];
      const args: (string | number)[] = [];
      if (patch.role !== undefined) (sets.push('role = ?'), args.push(patch.role));
      if (patch.passwordHash !== undefined) (sets.push('password_hash = ?'), args.push(patch.passwordHash));
      if (patch.disabled !== undefined) (sets.push('disabled = ?'), args.push(patch.disabled ? 1 : 0));
      if (patch.tokensValidAfter !== undefined) (sets.push('tokens_valid_after = ?'), args.push(patch.tokensValidAfter));
      if (sets.length > 0) db.prepare(`UPDATE users SET ${sets.join(', ')} WHERE id = ?`).run(...args, n);
      const r = stmt.userById.get(n);
      return r ? toUser(r) : null;
    },

    async deleteUser(id) {
      const n = rowId(id);
      if (n === null) return false;
      return db.transaction(() => {
        stmt.deleteTokensOfUser.run(String(n));
        return stmt.deleteUser.run(n).changes > 0;
      })();
    },

    async insertToken(t) {
      stmt.insertToken.run(t.hash, t.userId, t.createdAt, t.lastUsedAt, t.expiresAt, t.idleExpiry ? 1 : 0);
    },

    async getToken(hash) {
      const r = stmt.getToken.get(hash);
      return r ? toToken(r) : null;
    },

    async touchToken(hash, lastUsedAt) {
      stmt.touchToken.run(lastUsedAt, hash, lastUsedAt);
    },

    async deleteToken(hash) {
      return stmt.deleteToken.run(hash).changes > 0;
    },

    async deleteTokensOfUser(userId) {
      return db.transaction(() => {
        const hashes = stmt.tokensOfUser.all(userId).map((r) => r.hash);
        stmt.deleteTokensOfUser.run(userId);
        return hashes;
      })();
    },

    async deleteDeadTokens(idleBefore, now) {
      return stmt.deleteDeadTokens.run(idleBefore, now).changes;
    },
  };
}
