#!/usr/bin/env node
/**
 * The `herald` command line: serve, and the few admin tasks a script needs
 * before any HTTP call is possible (create users, issue tokens).
 */
import { CONFIG_SCHEMA, ConfigError, configHelp, flagName, loadConfig, parseFlags, type Config, type ConfigKey } from './config.js';
import { Auth } from './core/auth.js';
import { guardUnhandledRejections } from './core/background.js';
import { systemClock } from './clock.js';
import { createLogger } from './log.js';
import { HeraldServer } from './server.js';
import { reloadFailures } from './reload.js';
import { HERALD_VERSION } from './version.js';
import { MqttApps } from './apps/mqtt-apps.js';
import { checkConfig } from './cli/check-config.js';
import { EXIT_FAILURE, fail, openStore, quietLogger } from './cli/common.js';
import { describeStartupError } from './cli/startup-errors.js';
import { USER_OPTIONS, userCommand } from './cli/users.js';
import { WEBHOOK_OPTIONS, webhookCommand } from './cli/webhook.js';

const HELP = `herald: a real-time message push server (STOMP, MQTT, JSON WebSocket)

Usage:
  herald serve [options]                      run the server (what "npm start" does)
  herald user add NAME [--password P] [--role user|admin|service]
                                              create a user (a random password is printed if none is given)
  herald user list                            list users
  herald user passwd NAME [--password P]      set a new password (else read from standard input, or typed
                                              twice at a prompt); the user's tokens are revoked
  herald user delete NAME                     delete a user and its tokens (never the last active admin)
  herald token issue NAME [--expires-in SECONDS]
                                              print a token for scripts; it does not idle-expire,
                                              and dies after SECONDS if given
  herald app add NAME                         register an MQTT app, for devices that log in with
                                              app and user tokens (docs/clients.md): prints appId,
                                              appClientId and appClientSecret (shown once)
  herald app list                             list MQTT apps
  herald check-config [--json] [options]      validate the configuration serve would use and print every
                                              key, its value (secrets redacted) and where it came from
  herald webhook test URL [--secret S]        send a signed sample event to a webhook receiver and print
                                              its answer (the secret defaults to the configured webhook's)
  herald --help | --version

Options (each also settable as an environment variable, or in herald.config.json
under its camelCase name; flags win over the environment, which wins over the file):
  --config FILE                  HERALD_CONFIG                  config file (default ./herald.config.json if present)
${configHelp()}
`;

async function serve(config: Config): Promise<void> {
  const log = createLogger(config);
  let server: HeraldServer;
  try {
    server = await HeraldServer.start({ config, log });
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    // One line in words on stderr; the stack only in a debug log.
    log.debug({ err }, 'start-up failed');
    fail(describeStartupError(err, config), EXIT_FAILURE);
  }
  // Every background task handles its own failures; a rejection that slips past one is a bug to log and
  // count (herald_unhandled_rejections_total), not a reason to drop every client of the node.
  guardUnhandledRejections(log, server.ctx.metrics.unhandledRejections);
  let signals = 0;
  const shutdown = (signal: string): void => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      log.flush?.();
      process.exit(1);
    }
    log.info({ signal, drainReadySeconds: config.drainReadySeconds, drainSeconds: config.drainSeconds }, 'signal received, draining (a second signal exits at once)');
    // The drain's two windows are meant; shutdownTimeoutMs bounds what comes after them.
    const limitMs = (config.drainReadySeconds + config.drainSeconds) * 1000 + config.shutdownTimeoutMs;
    const timer = setTimeout(() => {
      log.error({ timeoutMs: limitMs }, 'graceful shutdown took too long; exiting anyway');
      process.exit(1);
    }, limitMs);
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
  // SIGHUP: aclFile and the TLS files are read again and the JWKS fetched again; nothing is dropped, and a
  // part whose new files do not load keeps what it had (each part logs; this line sums up).
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading aclFile, the TLS files and the JWKS');
    server.reload().then(
      (report) => {
        if (report.ok) log.info({ reload: report }, 'reload done');
        else log.warn({ reload: report }, `reload incomplete: ${reloadFailures(report)}`);
      },
      (err: unknown) => log.error({ err }, 'reload failed'),
    );
  });
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
    const auth = new Auth(store, config, systemClock, quietLogger(config));
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

/** Options that take a value, besides the configuration flags, and the commands (or `user` subcommands) that take them. */
const EXTRA_OPTIONS = ['--password', '--role', '--expires-in', ...WEBHOOK_OPTIONS];
/** Options that take no value. */
const SWITCHES = ['--json'];

/** The extra options and switches `herald COMMAND [SUB]` accepts. */
function optionsOf(command: string | undefined, sub: string | undefined): readonly string[] {
  switch (command) {
    case 'user':
      return USER_OPTIONS[sub ?? ''] ?? [];
    case 'token':
      return ['--expires-in'];
    case 'check-config':
      return ['--json'];
    case 'webhook':
      return WEBHOOK_OPTIONS;
    default:
      return [];
  }
}

const CONFIG_FLAGS = new Map<string, ConfigKey | 'config'>([
  ...(Object.keys(CONFIG_SCHEMA) as ConfigKey[]).map((k) => [flagName(k), k] as const),
  ['--config', 'config'],
]);

/**
 * Every option on the command line must be known before anything is parsed
 * (`serve --unknown` is "unknown option --unknown", not "needs a value"),
 * and apply to the command given. Returns the arguments for parseFlags,
 * without the switches, and the switches found.
 */
function checkOptions(argv: readonly string[]): { args: string[]; switches: Set<string> } {
  const args: string[] = [];
  const switches = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('-') || arg === '-') {
      args.push(arg);
      continue;
    }
    const name = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
    if (SWITCHES.includes(name)) {
      if (name !== arg) fail(`option ${name} takes no value`);
      switches.add(name);
      continue;
    }
    const key = CONFIG_FLAGS.get(name);
    if (key === undefined && !EXTRA_OPTIONS.includes(name)) fail(`unknown option ${name}; run "herald --help" for the list`);
    args.push(arg);
    const next = argv[i + 1];
    const isSwitchLike = key !== undefined && key !== 'config' && CONFIG_SCHEMA[key].kind.type === 'bool' && (next === undefined || next.startsWith('--'));
    if (name === arg && !isSwitchLike && next !== undefined) args.push(argv[++i]!);
  }
  return { args, switches };
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
  const { args, switches } = checkOptions(argv);
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(args, EXTRA_OPTIONS);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const [command, ...rest] = parsed.positional;
  const allowed = optionsOf(command, rest[0]);
  for (const name of [...Object.keys(parsed.extra).map((n) => '--' + n), ...switches]) {
    if (!allowed.includes(name)) fail(`unknown option ${name} for "herald ${[command, command === 'user' ? rest[0] : undefined].filter(Boolean).join(' ')}"; run "herald --help"`);
  }
  // check-config reports an invalid configuration as its finding (exit 1), not as a usage error.
  if (command === 'check-config') {
    if (rest.length > 0) fail(`unexpected argument "${rest[0]!}"; usage: herald check-config [--json] [options]`);
    return checkConfig(parsed.flags, switches.has('--json'));
  }
  let config: Config;
  try {
    config = loadConfig({ flags: parsed.flags });
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  switch (command) {
    case 'serve':
      if (rest.length > 0) fail(`unexpected argument "${rest[0]!}"; usage: herald serve [options]`);
      return serve(config);
    case 'user':
      return userCommand(config, rest, parsed.extra);
    case 'token':
      return tokenCommand(config, rest, parsed.extra);
    case 'app':
      return appCommand(config, rest);
    case 'webhook':
      return webhookCommand(config, rest, parsed.extra);
    default:
      fail(`unknown command "${command ?? ''}"; run "herald --help"`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  // One line in words; the stack trace only when asked for (HERALD_LOG_LEVEL=debug).
  const message = err instanceof Error ? err.message : String(err);
  const debug = /^(debug|trace)$/.test(process.env['HERALD_LOG_LEVEL'] ?? '');
  process.stderr.write(`herald: ${debug && err instanceof Error ? (err.stack ?? message) : message.replace(/\s*\n\s*/g, '; ')}\n`);
  process.exit(EXIT_FAILURE);
});
