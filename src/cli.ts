#!/usr/bin/env node
/**
 * The `herald` command line: serve, and the few admin tasks a script needs
 * before any HTTP call is possible (create users, issue tokens).
 */
import { ConfigError, configHelp, loadConfig, parseFlags, type Config } from './config.js';
import { Auth } from './core/auth.js';
import { guardUnhandledRejections } from './core/background.js';
import { systemClock } from './clock.js';
import { createLogger } from './log.js';
import { HeraldServer, openStore as openServerStore } from './server.js';
import { HERALD_VERSION } from './version.js';
import type { Store } from './store/store.js';
import { DuplicateError, ROLES, type Role } from './store/store.js';
import { randomPassword } from './core/passwords.js';
import { MqttApps } from './apps/mqtt-apps.js';

const HELP = `herald: a real-time message push server (STOMP, MQTT, JSON WebSocket)

Usage:
  herald serve [options]                      run the server (what "npm start" does)
  herald user add NAME [--password P] [--role user|admin|service]
                                              create a user (a random password is printed if none is given)
  herald user list                            list users
  herald token issue NAME [--expires-in SECONDS]
                                              print a token for scripts; it does not idle-expire,
                                              and dies after SECONDS if given
  herald app add NAME                         register an MQTT app, for devices that log in with
                                              app and user tokens (docs/clients.md): prints appId,
                                              appClientId and appClientSecret (shown once)
  herald app list                             list MQTT apps
  herald --help | --version

Options (each also settable as an environment variable, or in herald.config.json
under its camelCase name; flags win over the environment, which wins over the file):
  --config FILE                  HERALD_CONFIG                  config file (default ./herald.config.json if present)
${configHelp()}
`;

function fail(message: string, code = 2): never {
  process.stderr.write(`herald: ${message}\n`);
  process.exit(code);
}

/** The same store `serve` uses: SQLite under dataDir, or PostgreSQL with databaseUrl. */
async function openStore(config: Config): Promise<Store> {
  try {
    return await openServerStore(config, createLogger({ ...config, logLevel: 'warn' }));
  } catch (err) {
    fail((err as Error).message, 1);
  }
}

async function serve(config: Config): Promise<void> {
  const log = createLogger(config);
  let server: HeraldServer;
  try {
    server = await HeraldServer.start({ config, log });
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') fail(`cannot listen: address in use (${e.message}); pick another port or stop the other process`, 1);
    log.fatal({ err }, 'start-up failed');
    process.exit(1);
  }
  // Every background task handles its own failures; a rejection that slips past one is a bug to log and
  // count (herald_unhandled_rejections_total), not a reason to drop every client of the node.
  guardUnhandledRejections(log, server.ctx.metrics.unhandledRejections);
  let signals = 0;
  const shutdown = (signal: string): void => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'signal received, draining');
    const timer = setTimeout(() => {
      log.error({ timeoutMs: config.shutdownTimeoutMs }, 'graceful shutdown took too long; exiting anyway');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    timer.unref();
    server.stop().then(
      () => {
        log.flush?.();
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // SIGHUP: the TLS certificate and key are read again (new handshakes use them; nothing is dropped).
  process.on('SIGHUP', () => void server.reloadTls());
}

async function userCommand(config: Config, args: string[], extra: Record<string, string>): Promise<void> {
  const store = await openStore(config);
  const auth = new Auth(store, config, systemClock, createLogger({ ...config, logLevel: 'warn' }));
  try {
    const [sub, name] = args;
    if (sub === 'list') {
      for (const u of await store.listUsers()) {
        process.stdout.write(`${u.id}\t${u.name}\t${u.role}${u.disabled ? '\tdisabled' : ''}\n`);
      }
      return;
    }
    if (sub !== 'add') fail(`unknown command "user ${sub ?? ''}"; try "herald user add NAME" or "herald user list"`);
    if (!name) fail('user add needs a NAME');
    if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) {
      fail(`user name "${name}" is not allowed: use 1-64 letters, digits, ".", "_", "@" or "-"`);
    }
    const role = (extra['role'] ?? 'user') as Role;
    if (!ROLES.includes(role)) fail(`--role must be one of ${ROLES.join(', ')}, not "${role}"`);
    const given = extra['password'];
    if (given !== undefined && given.length < 8) fail('--password must have at least 8 characters');
    const password = given ?? randomPassword();
    try {
      const user = await auth.createUser(name, password, role);
      process.stdout.write(`created user ${user.name} (id ${user.id}, role ${user.role})\n`);
      if (given === undefined) process.stdout.write(`password: ${password}\n`);
    } catch (err) {
      if (err instanceof DuplicateError) fail(err.message, 1);
      throw err;
    }
  } finally {
    await store.close();
  }
}

async function tokenCommand(config: Config, args: string[], extra: Record<string, string>): Promise<void> {
  const [sub, name] = args;
  if (sub !== 'issue' || !name) fail('usage: herald token issue NAME [--expires-in SECONDS]');
  let expiresAt: number | null = null;
  if (extra['expires-in'] !== undefined) {
    const s = Number(extra['expires-in']);
    if (!Number.isInteger(s) || s <= 0) fail(`--expires-in must be a positive number of seconds, not "${extra['expires-in']}"`);
    expiresAt = Date.now() + s * 1000;
  }
  const store = await openStore(config);
  try {
    const user = await store.getUserByName(name);
    if (!user) fail(`no user named "${name}"; create it with "herald user add ${name}"`, 1);
    if (user.disabled) fail(`user "${name}" is disabled`, 1);
    const auth = new Auth(store, config, systemClock, createLogger({ ...config, logLevel: 'warn' }));
    process.stdout.write((await auth.issueToken(user, { idleExpiry: false, expiresAt })) + '\n');
  } finally {
    await store.close();
  }
}

async function appCommand(config: Config, args: string[]): Promise<void> {
  const [sub, name] = args;
  const store = await openStore(config);
  try {
    const apps = new MqttApps(store, config, systemClock);
    if (sub === 'list') {
      for (const a of await apps.list()) process.stdout.write(`${a.id}\t${a.name}\t${a.clientId}\n`);
      return;
    }
    if (sub !== 'add' || !name) fail('usage: herald app add NAME | herald app list');
    const app = await apps.create(name);
    process.stdout.write(`appId: ${app.appId}\nappClientId: ${app.appClientId}\nappClientSecret: ${app.appClientSecret}\n`);
  } finally {
    await store.close();
  }
}

async function main(argv: string[]): Promise<void> {
  if (argv.length === 0 || argv.includes('--help') || argv.includes('-h') || argv[0] === 'help') {
    process.stdout.write(HELP);
    return;
  }
  if (argv.includes('--version') || argv.includes('-v')) {
    process.stdout.write(HERALD_VERSION + '\n');
    return;
  }
  let parsed: ReturnType<typeof parseFlags>;
  let config: Config;
  try {
    parsed = parseFlags(argv, ['--password', '--role', '--expires-in']);
    config = loadConfig({ flags: parsed.flags });
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const [command, ...rest] = parsed.positional;
  switch (command) {
    case 'serve':
      return serve(config);
    case 'user':
      return userCommand(config, rest, parsed.extra);
    case 'token':
      return tokenCommand(config, rest, parsed.extra);
    case 'app':
      return appCommand(config, rest);
    default:
      fail(`unknown command "${command ?? ''}"; run "herald --help"`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`herald: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
