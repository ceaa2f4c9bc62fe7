/**
 * Why `herald serve` could not start, in one line a person can act on: the
 * system's error codes (a port in use, a host that is not this machine's, a
 * file that cannot be read) turned into words, with no stack trace.
 */
import type { Config } from '../config.js';

type SystemError = Error & { code?: string; syscall?: string; path?: string; address?: string; port?: number; hostname?: string };

const FILE_REASONS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'a file is in the way',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EISDIR: 'it is a directory',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EMFILE: 'too many open files (raise LimitNOFILE / ulimit -n)',
};

const FILE_VERBS: Readonly<Record<string, string>> = {
  open: 'open',
  read: 'read',
  mkdir: 'create the directory',
  scandir: 'read the directory',
  stat: 'find',
  access: 'use',
};

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, '; ').trim();

/** The listener's address as `host:port` (IPv6 in brackets). */
function where(e: SystemError): string {
  const host = e.address ?? e.hostname ?? '?';
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return e.port !== undefined ? `${shownHost}:${e.port}` : shownHost;
}

export function describeStartupError(err: unknown, config: Pick<Config, 'dataDir' | 'databaseUrl'>): string {
  if (!(err instanceof Error)) return `start-up failed: ${oneLine(String(err))}`;
  const e = err as SystemError;
  switch (e.code) {
    case 'EADDRINUSE':
      return `cannot listen on ${where(e)}: the address is in use; pick another port or stop the other process`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where(e)}: ${e.address ?? 'the host'} is not an address of this machine; set host to 0.0.0.0 (every interface), 127.0.0.1 or one of its own addresses`;
    case 'EACCES':
    case 'EPERM':
      if (e.syscall === 'listen' || e.syscall === 'bind') {
        return `cannot listen on ${where(e)}: permission denied (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability)`;
      }
      break;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NONAME':
      if (e.syscall === 'getaddrinfo') {
        return `cannot listen: host ${JSON.stringify(e.hostname ?? '')} is neither an IP address nor a name this machine can resolve (${e.code})`;
      }
      break;
  }
  if (e.path !== undefined && e.code !== undefined) {
    const verb = FILE_VERBS[e.syscall ?? ''] ?? 'use';
    return `cannot ${verb} ${e.path}: ${FILE_REASONS[e.code] ?? e.code}`;
  }
  if (e.name === 'SqliteError' && !config.databaseUrl) {
    return `cannot use the SQLite database in dataDir ${config.dataDir}: ${oneLine(e.message)}`;
  }
  return `start-up failed: ${oneLine(e.message)}`;
}
