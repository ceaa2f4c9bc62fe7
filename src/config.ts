/**
 * One typed, validated configuration object.
 *
 * Precedence (lowest first): built-in defaults < JSON config file
 * (`herald.config.json` in the working directory, or the file named by
 * HERALD_CONFIG / --config) < HERALD_* environment variables < CLI flags.
 *
 * Every key has one name per source: `httpPort` in the file,
 * `HERALD_HTTP_PORT` in the environment, `--http-port` on the command line.
 * The exception is a key whose value is a structure no variable or flag
 * could hold well (FILE_ONLY_KEYS: the `webhooks` list): it is set in the
 * file only (or in code, by tests).
 */
import { readFileSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseWebhooks, type WebhookInput, type WebhookSpec } from './webhooks/spec.js';

type Kind =
  | { type: 'int'; min: number; max: number }
  /** A listener port: 0–65535 (0 picks a free one), or `off` (stored as -1: no listener). */
  | { type: 'port' }
  | { type: 'string'; allowEmpty: boolean; oneOf?: readonly string[] }
  | { type: 'bool' };

interface KeySpec<T> {
  kind: Kind;
  default: T;
  help: string;
}

/** A listener's port; `off` (read as -1) means no listener. */
export const PORT_OFF = -1;
const port = (def: number, help: string): KeySpec<number> => ({
  kind: { type: 'port' },
  default: def,
  help,
});
const int = (def: number, min: number, max: number, help: string): KeySpec<number> => ({
  kind: { type: 'int', min, max },
  default: def,
  help,
});
const str = (def: string, help: string, oneOf?: readonly string[]): KeySpec<string> => ({
  kind: { type: 'string', allowEmpty: oneOf === undefined, ...(oneOf ? { oneOf } : {}) },
  default: def,
  help,
});
const bool = (def: boolean, help: string): KeySpec<boolean> => ({ kind: { type: 'bool' }, default: def, help });

/** The schema: the single place a configuration key is declared. */
export const CONFIG_SCHEMA = {
  host: str('0.0.0.0', 'Address every listener binds to'),
  httpPort: port(8080, 'HTTP API and all WebSocket paths (0 = pick a free port, off = none)'),
  stompPort: port(61613, 'STOMP over raw TCP (0 = pick a free port, off = none)'),
  mqttPort: port(1883, 'MQTT over raw TCP (0 = pick a free port, off = none)'),
  httpsPort: port(8443, 'HTTPS: the HTTP API and every WebSocket path over TLS (wss://); on when tlsCertFile is set'),
  stompTlsPort: port(61614, 'STOMP over TLS; on when tlsCertFile is set'),
  mqttTlsPort: port(8883, 'MQTT over TLS (mqtts://); on when tlsCertFile is set'),
  tlsCertFile: str('', 'PEM certificate (a chain is allowed) for every TLS listener; SIGHUP reads it again'),
  tlsKeyFile: str('', 'PEM private key of tlsCertFile; SIGHUP reads it again'),
  tlsCaFile: str('', 'PEM certificates of the CAs whose client certificates are accepted (mutual TLS)'),
  tlsMinVersion: str('TLSv1.2', 'Oldest TLS version accepted', ['TLSv1.2', 'TLSv1.3']),
  tlsRequireClientCert: bool(false, 'STOMP and MQTT over TLS refuse clients without a certificate signed by tlsCaFile'),
  tlsClientCertAsUser: bool(false, 'STOMP and MQTT over TLS: a verified client certificate\'s CN names the Herald user, and no password or token is asked (like mosquitto use_identity_as_username)'),
  httpsHost: str('', 'Address the HTTPS listener binds to (empty: host)'),
  stompHost: str('', 'Address the STOMP TCP listener binds to (empty: host)'),
  stompTlsHost: str('', 'Address the STOMP TLS listener binds to (empty: host)'),
  mqttHost: str('', 'Address the MQTT TCP listener binds to (empty: host)'),
  mqttTlsHost: str('', 'Address the MQTT TLS listener binds to (empty: host)'),
  adminPort: port(PORT_OFF, 'When set, /metrics, /console and every admin API are served only on this port (off: on the HTTP and HTTPS ports)'),
  adminHost: str('127.0.0.1', 'Address the admin listener binds to'),
  proxyProtocol: bool(false, 'The STOMP and MQTT TCP listeners (and their TLS twins) expect a PROXY protocol v1 or v2 header first, from trustedProxies only, and take the client address from it'),
  trustedProxies: str('', 'Comma-separated addresses or CIDR ranges allowed to send a PROXY protocol header; connections from elsewhere are refused when proxyProtocol is on'),
  httpMaxConnections: int(0, 0, 10_000_000, 'WebSocket sessions the HTTP listener holds at once (0 = no limit); more are refused in their protocol'),
  httpsMaxConnections: int(0, 0, 10_000_000, 'WebSocket sessions the HTTPS listener holds at once (0 = no limit)'),
  stompMaxConnections: int(0, 0, 10_000_000, 'Connections the STOMP TCP listener holds at once (0 = no limit)'),
  stompTlsMaxConnections: int(0, 0, 10_000_000, 'Connections the STOMP TLS listener holds at once (0 = no limit)'),
  mqttMaxConnections: int(0, 0, 10_000_000, 'Connections the MQTT TCP listener holds at once (0 = no limit)'),
  mqttTlsMaxConnections: int(0, 0, 10_000_000, 'Connections the MQTT TLS listener holds at once (0 = no limit)'),
  drainReadySeconds: int(5, 0, 600, 'On SIGTERM, /readyz answers 503 this long while everything keeps serving, so load balancers take the node out'),
  drainSeconds: int(10, 0, 3600, 'Then clients are disconnected in paced batches over this long, each told why in its protocol'),
  dataDir: str('./data', 'Directory for the embedded SQLite database'),
  databaseUrl: str('', 'postgres://… selects PostgreSQL instead of SQLite'),
  redisUrl: str('', 'redis://… selects the Redis bus for cluster mode'),
  clusterName: str('herald', 'Cluster mode: prefix of every Redis key and channel, so clusters can share one Redis (letters, digits, - and _)'),
  nodeName: str('', 'Cluster mode: this node\'s name in presence and logs (default: host name and process id)'),
  presenceTtlSeconds: int(15, 2, 3600, 'Cluster mode: a node silent this long leaves presence (Redis), and its lease in PostgreSQL runs out (its claims and MQTT sessions are freed)'),
  databasePoolSize: int(10, 1, 500, 'PostgreSQL connections per node'),
  databaseConnectSeconds: int(60, 0, 3600, 'At start, how long an unreachable PostgreSQL is retried before the node gives up'),
  adminPassword: str('', 'Password of the `admin` user created on first start (random and printed once if empty)'),
  tokenIdleSeconds: int(600, 1, 31_536_000, 'A login token dies after this many seconds without use: an authenticated HTTP call, or opening a connection or a STOMP SEND with it (not on /v1/ws, which lives by HTTP calls)'),
  tokenSweepMs: int(1000, 50, 60_000, 'How often sessions are checked for dead tokens'),
  jwtSecret: str('', 'HS256 secret: JWTs signed with it are accepted as tokens'),
  jwtPublicKey: str('', 'RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) public key (PEM text, or a path to a PEM file): JWTs signed by its private key are accepted'),
  jwtIssuer: str('', 'If set, a JWT must carry this `iss`'),
  jwtAudience: str('', 'If set, a JWT must carry this `aud`'),
  authHookUrl: str('', 'http(s):// URL the application answers to decide who may connect (STOMP, MQTT, JSON WebSocket): see docs/backend-integration.md'),
  authHookMode: str('fallback', 'fallback: the connect hook decides when the credentials are not Herald\'s own; always: it decides every connection', ['fallback', 'always']),
  authHookCacheSeconds: int(60, 0, 86_400, 'How long a connect-hook decision (allow or deny) is reused for the same credentials (0 = ask every time)'),
  authHookTimeoutMs: int(2000, 100, 60_000, 'A connect hook that has not answered within this long refuses the connection as unavailable'),
  aclHookUrl: str('', 'http(s):// URL the application answers to decide each subscribe and publish the static rules and the connect answer leave open'),
  aclHookCacheSeconds: int(60, 0, 86_400, 'How long an ACL-hook decision is reused for the same session and topic filter (0 = ask every time)'),
  aclHookTimeoutMs: int(2000, 100, 60_000, 'An ACL hook that has not answered within this long denies the subscribe or publish'),
  jwtJwksUrl: str('', 'http(s):// URL of a JWKS: JWTs signed by its RS256, ES256 or EdDSA keys are accepted (fetched at start, cached, fetched again for an unknown kid at most once a minute)'),
  jwtJwksRefreshSeconds: int(3600, 60, 604_800, 'How often the JWKS of jwtJwksUrl is fetched again'),
  corsOrigins: str('*', 'Origins allowed to call the HTTP API from a browser: `*`, empty for none, or a comma-separated list'),
  httpBodyLimit: int(1_048_576, 1024, 67_108_864, 'Largest HTTP request body in bytes (larger: 413)'),
  loginMaxAttempts: int(10, 1, 1_000_000, 'Failed password logins allowed per (user name, client address) pair in each window (then 429 for that pair); a name failing from several addresses is slowed down (up to 3 s per attempt), never blocked'),
  loginWindowSeconds: int(300, 1, 86_400, 'Length of the login rate-limit window'),
  shutdownTimeoutMs: int(10_000, 100, 600_000, 'Longest a graceful shutdown may take before the process exits anyway'),
  sqliteSynchronous: str('FULL', 'SQLite synchronous mode: FULL survives power loss, NORMAL only process crashes', [
    'FULL',
    'NORMAL',
  ]),
  sqliteMaxSizeMb: int(0, 0, 16_777_216, 'SQLite: largest the database may grow, in MiB (0 = no limit); at the limit writes are refused with a clear error until pruning frees room'),
  stompHeartbeatMs: int(10_000, 0, 3_600_000, 'STOMP heart-beat the server offers and asks for, in ms (0 = none)'),
  stompMaxHeaderBytes: int(16_384, 256, 1_048_576, 'Largest STOMP command + header block in bytes'),
  stompMaxHeaders: int(64, 4, 4096, 'Most headers in one STOMP frame'),
  maxBodyBytes: int(1_048_576, 1, 268_435_456, 'Largest message body (STOMP frame body, published payload) in bytes'),
  maxUnackedPerSubscription: int(1000, 1, 1_000_000, 'Unacknowledged messages per client-ack subscription before delivery pauses'),
  maxSubscriptionsPerConnection: int(1000, 1, 1_000_000, 'Subscriptions one connection may hold'),
  maxConnectionsPerUser: int(100, 1, 10_000_000, 'Connections one user may hold at once, over all protocols'),
  slowConsumerBytes: int(8 * 1024 * 1024, 65_536, 1_073_741_824, 'Bytes queued for a client that does not read before it is disconnected'),
  publishRatePerSecond: int(2000, 0, 10_000_000, 'Messages one connection may publish per second (0 = no limit); faster publishers are slowed down'),
  maxHeldBytesPerConnection: int(16 * 1024 * 1024, 65_536, 4_294_967_295, 'Bytes of messages one connection may pin in memory (sent and not yet acknowledged, or waiting for its window); beyond this the connection is cut as a slow consumer'),
  connectTimeoutSeconds: int(10, 1, 3600, 'Every protocol: a connection that has not completed its CONNECT (authenticated) within this many seconds is closed'),
  maxPreAuthBytes: int(65_536, 1024, 268_435_456, 'Every protocol: bytes a connection may send before it is authenticated (a CONNECT is far smaller); more closes it'),
  maxUnauthenticatedPerAddress: int(256, 1, 10_000_000, 'Connections one client address may hold open before they authenticate (HTTP connections count while open); more are refused at once'),
  maxUnauthenticatedConnections: int(5000, 1, 10_000_000, 'Connections the whole server holds open before they authenticate (HTTP connections count while open), over all addresses; more are refused at once'),
  wsMessagesPerSecond: int(10_000, 0, 10_000_000, 'WebSocket messages one connection may send per second (0 = no limit); faster senders are not read until the next second'),
  httpRequestTimeoutSeconds: int(30, 1, 3600, 'An HTTP request whose headers and body have not all arrived within this long is answered 408 and closed (headers alone: at most 10 s)'),
  tokenFailuresPerAddress: int(100, 1, 1_000_000, 'Failed token presentations (unknown, expired or forged tokens) allowed per client address in each login window (then refused for the rest of the window)'),
  userSendToOthers: bool(false, 'Let users with role "user" send to other users\' mailboxes (/user/{other}/queue/…)'),
  messageMaxContentBytes: int(65_536, 1, 16_777_216, 'Largest message-service content in bytes (larger: 413)'),
  messageRetentionDays: int(30, 1, 36_500, 'Stored messages older than this are deleted'),
  messageMaxPerUser: int(10_000, 1, 100_000_000, 'Stored messages kept per receiver; the oldest go first'),
  messageRetentionSweepSeconds: int(600, 1, 86_400, 'How often the retention sweep runs'),
  jsonPingSeconds: int(30, 0, 3600, 'JSON WebSocket: {"event":"ping"} keep-alive interval (0 = none); a client silent for 3 intervals is closed'),
  threadMaxContentBytes: int(16_384, 1, 16_777_216, 'Largest chat message content in bytes'),
  threadRecallWindowSeconds: int(120, 0, 31_536_000, 'How long after sending an author may recall a chat message'),
  threadIdleCloseSeconds: int(1800, 0, 31_536_000, 'Close a chat thread with AUTO_CLOSED after this long without messages (0 = never)'),
  threadTypingPerSecond: int(2, 1, 1000, 'TYPING/PROCESSING notices one connection may send per thread per second'),
  appTokenSeconds: int(7200, 60, 31_536_000, 'Lifetime of an app access token (POST /openapi/rm/app/token)'),
  userTokenMaxSeconds: int(2_592_000, 60, 315_360_000, 'Longest lifetime an app may ask for a user token (expires_in is capped to it)'),
  mqttMaxKeepAliveSeconds: int(600, 1, 65_535, 'Longest MQTT keep-alive accepted; v5 clients asking for more get this as server keep alive'),
  mqttMaxPacketBytes: int(1_048_576 + 1024, 64, 268_435_455, 'Largest MQTT packet accepted'),
  mqttMaxInflight: int(100, 1, 65_535, 'Unacknowledged QoS 1/2 messages in flight to one MQTT client (v5: receive maximum)'),
  mqttRetainedMaxBytes: int(268_435_456, 0, 1_099_511_627_776, 'Largest total size of MQTT retained messages in bytes (0 = no limit); past it a new retained message is refused (v5 PUBACK 0x97) and only delivered'),
  mqttSessionExpirySeconds: int(604_800, 0, 4_294_967_295, 'How long a persistent MQTT session waits for its client (3.1.1 clean session 0; caps v5 session expiry)'),
  aclFile: str('', 'JSON file of topic rules for every protocol (allow/deny, publish/subscribe, {user}/{app}/{clientid}); empty: authenticated clients may do anything; SIGHUP reads it again'),
  sysIntervalSeconds: int(10, 0, 86_400, 'How often $SYS/broker/… statistics are published (0 = never); admins and services may subscribe'),
  historySampleSeconds: int(10, 1, 3600, 'How often the console\'s overview series are sampled into this node\'s history; 8640 samples are kept (24 h at 10 s)'),
  allowAnonymous: bool(false, 'Accept MQTT connections without credentials (like mosquitto allow_anonymous)'),
  trustProxy: bool(false, 'Take the client address from X-Forwarded-For (only behind a trusted proxy)'),
  logLevel: str('info', 'Log level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  logPretty: str('auto', 'Human-readable logs: auto (when stdout is a terminal), true or false', ['auto', 'true', 'false']),
  webhookMaxAttempts: int(15, 1, 1000, 'Attempts to deliver a webhook event before it goes to the dead list (with the default back-off, 15 span about a day)'),
  webhookRetryBaseMs: int(5000, 10, 3_600_000, 'Wait after the first failed webhook attempt; it doubles with each failure (±20% jitter)'),
  webhookRetryMaxMs: int(43_200_000, 10, 604_800_000, 'Longest wait between two attempts of a webhook event (the doubling stops there)'),
  webhookTimeoutMs: int(5000, 100, 120_000, 'A webhook receiver that has not answered within this long has failed the attempt'),
  webhookConcurrency: int(16, 1, 1000, 'Webhook requests one node has in flight at once (at most one per ordering key)'),
  webhookRetentionHours: int(24, 0, 8760, 'Delivered webhook events are kept this long for the admin API\'s recent list, then deleted'),
  webhookDeadRetentionDays: int(7, 1, 3650, 'Dead webhook events are kept this long for a replay, then deleted'),
} as const satisfies Record<string, KeySpec<number> | KeySpec<string> | KeySpec<boolean>>;

/** Keys set in the config file only: no environment variable or flag (see the top of this file). */
export const FILE_ONLY_KEYS = {
  webhooks: 'Webhooks: a list of {url, events, topics?, secret, name?} (docs/backend-integration.md); none by default',
} as const;
export type FileOnlyKey = keyof typeof FILE_ONLY_KEYS;

type Schema = typeof CONFIG_SCHEMA;
export type ConfigKey = keyof Schema;
export type Config = { readonly [K in ConfigKey]: Schema[K]['default'] extends number ? number : Schema[K]['default'] extends boolean ? boolean : string } & {
  readonly webhooks: readonly WebhookSpec[];
};
export type ConfigInput = { [K in ConfigKey]?: Config[K] } & { webhooks?: readonly WebhookInput[] };

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function envName(key: string): string {
  return 'HERALD_' + key.replace(/([A-Z])/g, '_$1').toUpperCase();
}
export function flagName(key: string): string {
  return '--' + key.replace(/([A-Z])/g, '-$1').toLowerCase();
}

const KEYS = Object.keys(CONFIG_SCHEMA) as ConfigKey[];

function describe(kind: Kind): string {
  switch (kind.type) {
    case 'int':
      return `an integer from ${kind.min} to ${kind.max}`;
    case 'port':
      return 'a port from 0 to 65535 (0: any free port), or off';
    case 'bool':
      return 'true or false';
    case 'string':
      return kind.oneOf ? `one of ${kind.oneOf.join(', ')}` : kind.allowEmpty ? 'a string' : 'a non-empty string';
  }
}

/** Converts and checks one raw value; `where` names the source for the error message. */
function coerce(key: ConfigKey, raw: unknown, where: string): number | string | boolean {
  const kind = CONFIG_SCHEMA[key].kind as Kind;
  const fail = (): never => {
    throw new ConfigError(`invalid configuration: ${where} = ${JSON.stringify(raw)}; ${key} must be ${describe(kind)}`);
  };
  switch (kind.type) {
    case 'port': {
      if (raw === 'off' || raw === false || raw === PORT_OFF) return PORT_OFF;
      let n: number;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string' && /^\d+$/.test(raw.trim())) n = Number(raw.trim());
      else return fail();
      if (!Number.isInteger(n) || n < 0 || n > 65535) fail();
      return n;
    }
    case 'int': {
      let n: number;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string' && /^-?\d+$/.test(raw.trim())) n = Number(raw.trim());
      else return fail();
      if (!Number.isInteger(n) || n < kind.min || n > kind.max) fail();
      return n;
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string') {
        const v = raw.trim().toLowerCase();
        if (['true', '1', 'yes', 'on'].includes(v)) return true;
        if (['false', '0', 'no', 'off'].includes(v)) return false;
      }
      return fail();
    }
    case 'string': {
      if (typeof raw !== 'string') return fail();
      if (kind.oneOf && !kind.oneOf.includes(raw)) fail();
      return raw;
    }
  }
}

export interface ConfigSources {
  /** Environment (defaults to process.env). */
  env?: NodeJS.ProcessEnv;
  /** CLI flags already split into key/value pairs by parseFlags. */
  flags?: Record<string, string>;
  /** Values set in code (tests); highest precedence. */
  overrides?: ConfigInput;
  /** Working directory used to find herald.config.json. */
  cwd?: string;
}

/**
 * Splits `--http-port 0`, `--http-port=0` and `--flag` (boolean true) into a map
 * keyed by config key. Unknown flags are an error naming the flag.
 * Returns the leftover positional arguments too.
 */
export function parseFlags(argv: readonly string[], extraFlags: readonly string[] = []): {
  flags: Record<string, string>;
  extra: Record<string, string>;
  positional: string[];
} {
  const byFlag = new Map(KEYS.map((k) => [flagName(k), k]));
  byFlag.set('--config', 'config' as ConfigKey);
  const flags: Record<string, string> = {};
  const extra: Record<string, string> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    let value: string;
    const key = byFlag.get(name);
    const isBool = key !== undefined && key in CONFIG_SCHEMA && CONFIG_SCHEMA[key].kind.type === 'bool';
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (isBool && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--'))) value = 'true';
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError(`option ${name} needs a value`);
      value = next;
      i++;
    }
    if (key !== undefined) flags[key] = value;
    else if (extraFlags.includes(name)) extra[name.slice(2)] = value;
    else throw new ConfigError(`unknown option ${name}; run "herald --help" for the list`);
  }
  return { flags, extra, positional };
}

/** The `webhooks` list, checked; a problem is a ConfigError naming the entry. */
function webhooksOf(raw: unknown, file?: string): WebhookSpec[] {
  const parsed = parseWebhooks(raw, file);
  if ('problem' in parsed) throw new ConfigError(`invalid configuration: ${parsed.problem}`);
  return parsed;
}

export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const cwd = sources.cwd ?? process.cwd();
  const values: Record<string, number | string | boolean | readonly WebhookSpec[]> = {};
  for (const k of KEYS) values[k] = CONFIG_SCHEMA[k].default;
  values['webhooks'] = [];

  // 1. config file
  const explicit = sources.flags?.['config'] ?? env['HERALD_CONFIG'];
  const file = explicit ? resolve(cwd, explicit) : resolve(cwd, 'herald.config.json');
  if (explicit && !existsSync(file)) throw new ConfigError(`config file ${file} does not exist`);
  if (existsSync(file)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${file} must hold a JSON object`);
    }
    for (const [k, v] of Object.entries(parsed)) {
      if (k === 'webhooks') {
        values[k] = webhooksOf(v, file);
        continue;
      }
      if (!(k in CONFIG_SCHEMA)) {
        throw new ConfigError(`config file ${file}: unknown key "${k}"; known keys: ${[...KEYS, ...Object.keys(FILE_ONLY_KEYS)].join(', ')}`);
      }
      values[k] = coerce(k as ConfigKey, v, `${k} in ${file}`);
    }
  }
  // 2. environment
  for (const k of KEYS) {
    const raw = env[envName(k)];
    if (raw !== undefined) values[k] = coerce(k, raw, envName(k));
  }
  // 3. flags
  for (const [k, raw] of Object.entries(sources.flags ?? {})) {
    if (k === 'config') continue;
    values[k] = coerce(k as ConfigKey, raw, flagName(k));
  }
  // 4. code overrides
  for (const [k, raw] of Object.entries(sources.overrides ?? {})) {
    if (k === 'webhooks') {
      if (raw !== undefined) values[k] = webhooksOf(raw);
      continue;
    }
    if (!(k in CONFIG_SCHEMA)) throw new ConfigError(`unknown configuration key "${k}"`);
    if (raw !== undefined) values[k] = coerce(k as ConfigKey, raw, k);
  }
  return Object.freeze(values) as unknown as Config;
}

/** Text for `herald --help`: every key with its env var, flag and default. */
export function configHelp(): string {
  return KEYS.map((k) => {
    const s = CONFIG_SCHEMA[k];
    return `  ${flagName(k).padEnd(24)} ${envName(k).padEnd(30)} default ${JSON.stringify(s.default)}\n      ${s.help}`;
  })
    .concat(Object.entries(FILE_ONLY_KEYS).map(([k, help]) => `  ${k.padEnd(24)} ${'(config file only)'.padEnd(30)}\n      ${help}`))
    .join('\n');
}
