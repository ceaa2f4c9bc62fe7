/** What every `herald` command shares: how it fails, and the store it works on. */
import type { Config } from '../config.js';
import { createLogger, type Logger } from '../log.js';
import { openStore as openServerStore } from '../server.js';
import type { Store } from '../store/store.js';

/** Exit codes: 1 for a failure (the store, a refused change, an invalid configuration), 2 for a usage error. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Prints `herald: message` on stderr and exits (a usage error unless told otherwise). */
export function fail(message: string, code = EXIT_USAGE): never {
  process.stderr.write(`herald: ${message}\n`);
  process.exit(code);
}

/** A logger for the admin commands: warnings and errors only, so their own output stays readable. */
export function quietLogger(config: Config): Logger {
  return createLogger({ ...config, logLevel: 'warn' });
}

/** The same store `serve` uses: SQLite under dataDir, or PostgreSQL with databaseUrl. */
export async function openStore(config: Config): Promise<Store> {
  try {
    return await openServerStore(config, quietLogger(config));
  } catch (err) {
    fail((err as Error).message, EXIT_FAILURE);
  }
}
