import { pino, type Logger } from 'pino';
import type { Config } from './config.js';

export type { Logger };

/** Structured JSON logs; human-readable when attached to a terminal (or logPretty=true). */
export function createLogger(config: Pick<Config, 'logLevel' | 'logPretty'>): Logger {
  const pretty = config.logPretty === 'true' || (config.logPretty === 'auto' && process.stdout.isTTY === true);
  if (pretty) {
    return pino({
      level: config.logLevel,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  return pino({ level: config.logLevel, base: { pid: process.pid } });
}
