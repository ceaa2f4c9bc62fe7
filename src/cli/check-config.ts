/**
 * `herald check-config`: validates the configuration `serve` would run with
 * and prints every key with its value and where it came from, secrets
 * redacted. Beyond the value checks of loadConfig it reads what start-up
 * reads, as start-up does (aclFile, the JWT key, the TLS files), resolves
 * `host`, and checks that the data directory can be used and that no two
 * listeners share a port; it creates nothing and contacts neither
 * PostgreSQL nor Redis nor the JWKS URL (only its form is checked).
 * Exit 0 when valid, 1 with the problems in words.
 */
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CONFIG_SCHEMA, ConfigError, PORT_OFF, envName, flagName, loadConfig, type Config, type ConfigKey } from '../config.js';
import { Acl } from '../core/acl.js';
import { loadJwtKeys } from '../core/jwt.js';
import { ProxyProtocol } from '../transports/proxy-accept.js';
import { TlsFiles } from '../transports/tls.js';
import { EXIT_FAILURE, fail, quietLogger } from './common.js';

const KEYS = Object.keys(CONFIG_SCHEMA) as ConfigKey[];
const REDACTED = '[redacted]';
/** Keys whose value is a secret whatever it looks like. */
const SECRET_KEY = /password|secret|passphrase/i;
/** URL query parameters that carry a secret (`postgres://host/db?password=…`). */
const SECRET_PARAM = /pass|secret|token|key/i;

export interface Origin {
  /** The config file read, if any. */
  file: string | undefined;
  /** Where each key's value came from: `default`, `file PATH`, `env NAME` or `flag --name`. */
  of(key: ConfigKey): string;
}

/** The same precedence as loadConfig: defaults < file < environment < flags. */
export function origins(flags: Readonly<Record<string, string>>, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Origin {
  const explicit = flags['config'] ?? env['HERALD_CONFIG'];
  const path = resolve(cwd, explicit ?? 'herald.config.json');
  const file = existsSync(path) ? path : undefined;
  const inFile = new Set(file ? Object.keys(JSON.parse(readFileSync(file, 'utf8')) as object) : []);
  return {
    file,
    of: (key) =>
      flags[key] !== undefined ? `flag ${flagName(key)}` : env[envName(key)] !== undefined ? `env ${envName(key)}` : inFile.has(key) ? `file ${file!}` : 'default',
  };
}

/** The value as it may be shown: secrets redacted, passwords in URLs too, key material summed up. */
export function shown(key: ConfigKey, value: string | number | boolean): string | number | boolean {
  if (CONFIG_SCHEMA[key].kind.type === 'port' && value === PORT_OFF) return 'off';
  if (typeof value !== 'string' || value === '') return value;
  if (SECRET_KEY.test(key)) return REDACTED;
  if (value.includes('-----BEGIN')) return /PRIVATE/.test(value) ? `${REDACTED} (private key)` : `(PEM text, ${Buffer.byteLength(value)} bytes)`;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return redactUrl(value);
  return value;
}

function redactUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `${REDACTED} (not a URL)`;
  }
  if (url.password) url.password = '***';
  for (const name of [...url.searchParams.keys()]) if (SECRET_PARAM.test(name)) url.searchParams.set(name, '***');
  return url.toString();
}

/** Problems start-up would meet beyond the values themselves (none: it would start). */
export async function deeperProblems(config: Config): Promise<string[]> {
  const problems: string[] = [];
  const attempt = async (check: () => unknown): Promise<void> => {
    try {
      await check();
    } catch (err) {
      problems.push((err as Error).message);
    }
  };
  problems.push(...storeProblems(config));
  await attempt(() => Acl.load(config.aclFile));
  // The JWKS URL's form is checked; the set itself is not fetched (see the closing line).
  await attempt(() => loadJwtKeys(config, quietLogger(config)));
  // Start-up's own reading of the TLS files: the same rules, the same words.
  await attempt(() => TlsFiles.open(config, quietLogger(config)));
  // Start-up's own reading of trustedProxies (and proxyProtocol without it).
  await attempt(() => ProxyProtocol.fromConfig(config));
  problems.push(...(await hostProblems(config.host)));
  // Each listener that will bind its own address (one left empty binds host).
  const tls = config.tlsCertFile !== '';
  const ownHosts = [
    ['httpsHost', tls && config.httpsPort !== PORT_OFF],
    ['stompHost', config.stompPort !== PORT_OFF],
    ['stompTlsHost', tls && config.stompTlsPort !== PORT_OFF],
    ['mqttHost', config.mqttPort !== PORT_OFF],
    ['mqttTlsHost', tls && config.mqttTlsPort !== PORT_OFF],
    ['adminHost', config.adminPort !== PORT_OFF],
  ] as const;
  for (const [key, on] of ownHosts) if (on && config[key] !== '') problems.push(...(await hostProblems(config[key], key)));
  problems.push(...portProblems(config));
  return problems;
}

function storeProblems(config: Config): string[] {
  const problems: string[] = [];
  if (config.databaseUrl && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    problems.push(`databaseUrl must be a postgres:// or postgresql:// URL (got ${JSON.stringify(shown('databaseUrl', config.databaseUrl))})`);
  }
  if (config.redisUrl) {
    if (!config.databaseUrl) problems.push('redisUrl (cluster mode) needs databaseUrl too: every node of a cluster must use the same PostgreSQL database');
    if (!/^rediss?:\/\//.test(config.redisUrl)) problems.push(`redisUrl must be a redis:// or rediss:// URL (got ${JSON.stringify(shown('redisUrl', config.redisUrl))})`);
    // The rule of src/bus/cluster.ts.
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(config.clusterName)) problems.push(`clusterName must be 1–64 letters, digits, - or _ (got ${JSON.stringify(config.clusterName)})`);
  }
  if (!config.databaseUrl) problems.push(...dataDirProblems(resolve(config.dataDir)));
  return problems;
}

/** SQLite needs to create (or open) dataDir/herald.db and its journal beside it. */
function dataDirProblems(dir: string): string[] {
  const writable = (path: string): boolean => {
    try {
      accessSync(path, constants.W_OK | constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) return [`dataDir ${dir} exists and is not a directory`];
    if (!writable(dir)) return [`dataDir ${dir} is not writable by this user (SQLite keeps its journal beside the database)`];
    const db = join(dir, 'herald.db');
    if (existsSync(db)) {
      try {
        accessSync(db, constants.R_OK | constants.W_OK);
      } catch {
        return [`${db} is not readable and writable by this user`];
      }
    }
    return [];
  }
  let parent = dirname(dir);
  while (!existsSync(parent)) parent = dirname(parent);
  if (!statSync(parent).isDirectory()) return [`dataDir ${dir} cannot be created: ${parent} is not a directory`];
  if (!writable(parent)) return [`dataDir ${dir} does not exist and cannot be created: ${parent} is not writable by this user`];
  return [];
}

/** Whether an address can be bound here: a wildcard, loopback, or an address of one of this machine's interfaces. */
function isLocal(address: string): boolean {
  if (['0.0.0.0', '::', '::1'].includes(address) || address.startsWith('127.')) return true;
  const bare = address.toLowerCase().replace(/%.*$/, '');
  return Object.values(networkInterfaces()).some((list) => (list ?? []).some((i) => i.address.toLowerCase() === bare));
}

async function hostProblems(host: string, key = 'host'): Promise<string[]> {
  let addresses: string[];
  if (isIP(host) !== 0) addresses = [host];
  else {
    try {
      addresses = (await lookup(host, { all: true })).map((a) => a.address);
    } catch (err) {
      return [`${key} ${JSON.stringify(host)} is neither an IP address nor a name this machine can resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`];
    }
  }
  if (addresses.some(isLocal)) return [];
  return [`${key} ${host}${addresses[0] === host ? '' : ` (${addresses.join(', ')})`} is not an address of this machine, so no listener could bind it; use 0.0.0.0 (every interface), 127.0.0.1 or one of its own addresses`];
}

/** Listeners on the same fixed port would fail start-up with "address in use". */
function portProblems(config: Config): string[] {
  const tls = config.tlsCertFile !== '';
  const byPort = new Map<number, string[]>();
  for (const key of KEYS) {
    if (CONFIG_SCHEMA[key].kind.type !== 'port') continue;
    const port = config[key] as number;
    if (port <= 0 || (!tls && /https|tls/i.test(key))) continue;
    byPort.set(port, [...(byPort.get(port) ?? []), key]);
  }
  return [...byPort].filter(([, keys]) => keys.length > 1).map(([port, keys]) => `${keys.join(' and ')} are ${keys.length === 2 ? 'both' : 'all'} ${port}: each listener needs its own port`);
}

/** The command itself. `flags` are the configuration flags of the command line. */
export async function checkConfig(flags: Readonly<Record<string, string>>, json: boolean): Promise<void> {
  let config: Config;
  let origin: Origin;
  try {
    config = loadConfig({ flags: { ...flags } });
    origin = origins(flags);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, EXIT_FAILURE);
    throw err;
  }
  const problems = await deeperProblems(config);
  const rows: { key: string; value: unknown; source: string }[] = KEYS.map((key) => ({ key, value: shown(key, config[key]), source: origin.of(key) }));
  // The file-only list: each entry with its secret redacted.
  const hooks = config.webhooks.map((w) => ({ ...w, url: redactUrl(w.url), secret: REDACTED }));
  rows.push({ key: 'webhooks', value: hooks, source: hooks.length > 0 ? `file ${origin.file!}` : 'default' });
  if (json) {
    const keys = Object.fromEntries(rows.map((r) => [r.key, { value: r.value, source: r.source }]));
    process.stdout.write(JSON.stringify({ valid: problems.length === 0, file: origin.file ?? null, problems, keys }, null, 2) + '\n');
  } else {
    process.stdout.write(`# configuration file: ${origin.file ?? 'none'}; secrets redacted\n`);
    const width = Math.max(...KEYS.map((k) => k.length));
    const valueWidth = Math.min(32, Math.max(...rows.map((r) => JSON.stringify(r.value).length)));
    for (const r of rows) process.stdout.write(`${r.key.padEnd(width)}  ${JSON.stringify(r.value).padEnd(valueWidth)}  ${r.source}\n`);
  }
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`herald: ${p}\n`);
    process.exit(EXIT_FAILURE);
  }
  if (!json) {
    const servers = config.jwtJwksUrl ? `PostgreSQL, Redis and the JWKS at ${redactUrl(config.jwtJwksUrl)} were` : 'PostgreSQL and Redis were';
    process.stdout.write(`configuration is valid (${servers} not contacted)\n`);
  }
}
