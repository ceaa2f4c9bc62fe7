/**
 * `herald user add|list|passwd|delete`: user accounts, straight on the store
 * (no server needed, none is told: see "Running server" in docs/deploy.md).
 * The same rules as the HTTP API (src/http/users.ts): the same name pattern
 * and password lengths, and the last active admin is never taken away.
 */
import type { Config } from '../config.js';
import { Auth } from '../core/auth.js';
import { randomPassword } from '../core/passwords.js';
import { systemClock } from '../clock.js';
import { USER_NAME_PATTERN } from '../http/users.js';
import { DuplicateError, ROLES, type Role, type Store, type UserRecord } from '../store/store.js';
import { EXIT_FAILURE, fail, openStore, quietLogger } from './common.js';

/** Options each `user` subcommand takes, besides the configuration flags. */
export const USER_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  add: ['--password', '--role'],
  passwd: ['--password'],
  list: [],
  delete: [],
};

const USAGE = 'usage: herald user add NAME [--password P] [--role R] | user list | user passwd NAME [--password P] | user delete NAME';

/** As the HTTP API: 8 to 1024 characters. */
const PASSWORD_MIN = 8;
const PASSWORD_MAX = 1024;

const isActiveAdmin = (u: UserRecord): boolean => u.role === 'admin' && !u.disabled;

export async function userCommand(config: Config, args: readonly string[], extra: Readonly<Record<string, string>>): Promise<void> {
  const [sub, name, ...more] = args;
  if (sub === undefined || !(sub in USER_OPTIONS)) fail(`unknown command "user ${sub ?? ''}"; ${USAGE}`);
  if (sub !== 'list' && !name) fail(`user ${sub} needs a NAME; ${USAGE}`);
  const unexpected = sub === 'list' ? args[1] : more[0];
  if (unexpected !== undefined) fail(`unexpected argument "${unexpected}"; ${USAGE}`);
  if (sub === 'add') checkName(name!);
  // Read before the store is opened: a password typed at a prompt should not hold a database connection.
  const password = sub === 'passwd' ? await newPassword(extra['password'], name!) : undefined;
  const store = await openStore(config);
  const auth = new Auth(store, config, systemClock, quietLogger(config));
  try {
    if (sub === 'list') return await list(store);
    if (sub === 'add') return await add(auth, name!, extra);
    const user = await store.getUserByName(name!);
    if (!user) fail(`no user named "${name!}"; "herald user list" shows who there is`, EXIT_FAILURE);
    if (sub === 'passwd') return await passwd(auth, user, password!);
    return await remove(store, user);
  } finally {
    await store.close();
  }
}

function checkName(name: string): void {
  if (!new RegExp(USER_NAME_PATTERN).test(name)) {
    fail(`user name "${name}" is not allowed: use 1-64 letters, digits, ".", "_", "@" or "-"`);
  }
}

function checkPassword(password: string, where: string): void {
  if (password.length < PASSWORD_MIN) fail(`${where} must have at least ${PASSWORD_MIN} characters`);
  if (password.length > PASSWORD_MAX) fail(`${where} must have at most ${PASSWORD_MAX} characters`);
}

async function list(store: Store): Promise<void> {
  for (const u of await store.listUsers()) {
    process.stdout.write(`${u.id}\t${u.name}\t${u.role}${u.disabled ? '\tdisabled' : ''}\n`);
  }
}

async function add(auth: Auth, name: string, extra: Readonly<Record<string, string>>): Promise<void> {
  const role = (extra['role'] ?? 'user') as Role;
  if (!ROLES.includes(role)) fail(`--role must be one of ${ROLES.join(', ')}, not "${role}"`);
  const given = extra['password'];
  if (given !== undefined) checkPassword(given, '--password');
  const password = given ?? randomPassword();
  try {
    const user = await auth.createUser(name, password, role);
    process.stdout.write(`created user ${user.name} (id ${user.id}, role ${user.role})\n`);
    if (given === undefined) process.stdout.write(`password: ${password}\n`);
  } catch (err) {
    if (err instanceof DuplicateError) fail(err.message, EXIT_FAILURE);
    throw err;
  }
}

/** A new password ends every token of the user, as it does over HTTP. */
async function passwd(auth: Auth, user: UserRecord, password: string): Promise<void> {
  await auth.setPassword(user.id, password);
  const revoked = await auth.revokeUser(user.id);
  process.stdout.write(`changed the password of ${user.name} (id ${user.id}); ${revoked} login token${revoked === 1 ? '' : 's'} revoked\n`);
}

/**
 * Deletes the user and its tokens. The last active admin stays: checked
 * before, and once more after disabling it first, since another process (a
 * node's HTTP API, another command) may be taking away the other admin at
 * the same moment; then it is enabled again and the deletion refused.
 */
async function remove(store: Store, user: UserRecord): Promise<void> {
  if (isActiveAdmin(user)) {
    const refuse = (): never =>
      fail(
        `"${user.name}" is the last active admin: deleting it would leave nobody able to manage users; make another user admin first (herald user add NAME --role admin)`,
        EXIT_FAILURE,
      );
    if ((await store.listUsers()).filter(isActiveAdmin).length <= 1) refuse();
    await store.updateUser(user.id, { disabled: true });
    if ((await store.listUsers()).filter(isActiveAdmin).length === 0) {
      await store.updateUser(user.id, { disabled: false });
      refuse();
    }
  }
  await store.deleteUser(user.id);
  process.stdout.write(`deleted user ${user.name} (id ${user.id}, role ${user.role})\n`);
}

/**
 * The new password: `--password P`, else standard input: typed twice at a
 * prompt that does not echo when it is a terminal, or its first line when it
 * is a pipe or a file (`printf '%s\n' "$PW" | herald user passwd NAME`).
 */
async function newPassword(given: string | undefined, name: string): Promise<string> {
  if (given !== undefined) {
    checkPassword(given, '--password');
    return given;
  }
  if (process.stdin.isTTY) {
    const first = await promptHidden(`new password for ${name}: `);
    checkPassword(first, 'the password');
    if ((await promptHidden('again: ')) !== first) fail('the two passwords differ; nothing changed', EXIT_FAILURE);
    return first;
  }
  const text = await readAll(process.stdin);
  const line = text.split(/\r?\n/, 1)[0] ?? '';
  if (line === '') fail(`no new password: give --password P, or write it on standard input (printf '%s\\n' "$PW" | herald user passwd ${name})`);
  checkPassword(line, 'the password read from standard input');
  return line;
}

async function readAll(stream: NodeJS.ReadStream): Promise<string> {
  let text = '';
  try {
    for await (const chunk of stream) {
      text += String(chunk);
      if (text.length > PASSWORD_MAX * 4) break;
    }
  } catch {
    // A closed or unreadable standard input reads as empty.
  }
  return text;
}

/** Reads one line from the terminal without echoing it; Ctrl-C exits. */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  // No echo before the prompt shows: what is typed after it is never displayed.
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  process.stderr.write(prompt);
  return new Promise((resolve) => {
    let typed = '';
    const done = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(typed);
          return;
        }
        if (ch === '\u0003' || ch === '\u0004') {
          done();
          fail('cancelled; nothing changed', EXIT_FAILURE);
        }
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else if (ch >= ' ') typed += ch;
      }
    };
    stdin.on('data', onData);
  });
}
