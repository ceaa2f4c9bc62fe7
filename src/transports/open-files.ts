/**
 * Open files: every connection holds one descriptor, so the process's limit
 * (RLIMIT_NOFILE) bounds how many connections a node can hold. Node raises
 * its soft limit to the hard one as it starts (on Linux and macOS); at start
 * Herald checks that it did, raises it itself with prlimit(1) if not, and
 * logs how many connections the limit allows, with a warning when the
 * listeners' `…MaxConnections` caps add up to more than it: past the limit
 * the system refuses new connections (EMFILE), whatever the caps say.
 *
 * Only the hard limit bounds this, and only root (or the service manager,
 * `LimitNOFILE=`; a container's `--ulimit nofile=`) can raise it.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';

/** Descriptors kept aside from connections: the store, log files, outgoing HTTP and Redis, plain HTTP requests. */
export const RESERVED_DESCRIPTORS = 256;

export interface OpenFileLimit {
  soft: number;
  /** Infinity when unlimited. */
  hard: number;
}

/** The `Max open files` line of /proc/<pid>/limits; undefined where there is none (not Linux). */
export function parseOpenFileLimit(limitsText: string): OpenFileLimit | undefined {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limitsText);
  if (!m) return undefined;
  const n = (s: string): number => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(m[1]!), hard: n(m[2]!) };
}

function readOwnLimit(): OpenFileLimit | undefined {
  try {
    return parseOpenFileLimit(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * This process's limit, with the soft limit raised to the hard one when it
 * was not (Node normally has done it): prlimit(1) sets it on our own PID.
 * Undefined where the limit cannot be read (not Linux).
 */
export function raiseOpenFileLimit(): OpenFileLimit | undefined {
  const limit = readOwnLimit();
  if (!limit || limit.soft >= limit.hard) return limit;
  const to = Number.isFinite(limit.hard) ? String(limit.hard) : 'unlimited';
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${to}:${to}`], { stdio: 'ignore', timeout: 5000 });
  } catch {
    // No prlimit, or not allowed: the check below reports the soft limit as it is.
  }
  return readOwnLimit() ?? limit;
}

/** One listener's cap on connections held at once (0: none). */
export interface ListenerCap {
  name: string;
  maxConnections: number;
}

export type OpenFilesVerdict =
  | { kind: 'enough'; allows: number; needed: number }
  | { kind: 'too_low'; allows: number; needed: number }
  /** A listener has no cap: what the limit allows is all that can be said. */
  | { kind: 'uncapped'; allows: number };

/** What the limit allows (the soft limit less RESERVED_DESCRIPTORS) against what the listeners' caps add up to. */
export function judgeOpenFiles(limit: OpenFileLimit, caps: readonly ListenerCap[]): OpenFilesVerdict {
  const allows = Math.max(0, limit.soft - RESERVED_DESCRIPTORS);
  if (caps.length === 0 || caps.some((c) => c.maxConnections === 0)) return { kind: 'uncapped', allows };
  const needed = caps.reduce((sum, c) => sum + c.maxConnections, 0);
  return needed <= allows ? { kind: 'enough', allows, needed } : { kind: 'too_low', allows, needed };
}

const HOW_TO_RAISE = 'raise the hard limit: LimitNOFILE= in the systemd unit, `ulimit -Hn` as root before starting, or --ulimit nofile=… for a container';

/** Raises the soft limit if needed and logs what the limit allows (a warning when it is below what the caps need). */
export function checkOpenFiles(log: Logger, caps: readonly ListenerCap[], limit: OpenFileLimit | undefined = raiseOpenFileLimit()): OpenFilesVerdict | undefined {
  if (!limit) return undefined;
  const fields = { softLimit: limit.soft, hardLimit: limit.hard };
  if (limit.soft < limit.hard) {
    log.warn(fields, `open files: the soft limit stays at ${limit.soft}, below the hard limit ${limit.hard} (prlimit could not raise it): run \`ulimit -Sn ${limit.hard}\` before starting Herald`);
  }
  const v = judgeOpenFiles(limit, caps);
  const capsText = caps.map((c) => `${c.name} ${c.maxConnections || 'unlimited'}`).join(', ');
  if (v.kind === 'too_low') {
    log.warn(
      { ...fields, needed: v.needed, listeners: capsText },
      `open files: the limit of ${limit.soft} lets this node hold about ${v.allows} connections, but the listeners' maxConnections add up to ${v.needed} ` +
        `(${capsText}); connections past the limit are refused by the system (EMFILE). Lower the caps, or ${HOW_TO_RAISE}`,
    );
  } else {
    log.info({ ...fields, connections: v.allows, listeners: capsText }, `open files: the limit of ${limit.soft} lets this node hold about ${v.allows} connections at once`);
  }
  return v;
}

/** The caps of the listeners that are bound (by the names they are announced under); the admin listener has none and is left out. */
export function listenerCaps(config: Pick<Config, CapKey>, bound: readonly { name: string }[]): ListenerCap[] {
  const caps: ListenerCap[] = [];
  for (const { name } of bound) {
    const key = CAP_KEYS[name];
    if (key) caps.push({ name, maxConnections: config[key] });
  }
  return caps;
}

type CapKey = 'httpMaxConnections' | 'httpsMaxConnections' | 'stompMaxConnections' | 'stompTlsMaxConnections' | 'mqttMaxConnections' | 'mqttTlsMaxConnections';
const CAP_KEYS: Readonly<Record<string, CapKey>> = {
  http: 'httpMaxConnections',
  https: 'httpsMaxConnections',
  stomp: 'stompMaxConnections',
  'stomp-tls': 'stompTlsMaxConnections',
  mqtt: 'mqttMaxConnections',
  'mqtt-tls': 'mqttTlsMaxConnections',
};
