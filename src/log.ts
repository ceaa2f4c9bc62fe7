import { pino, type Logger, type LoggerOptions } from 'pino';
import type { Config } from './config.js';

export type { Logger };

/**
 * Names under which a credential travels: query parameters (`?__token=…`),
 * JSON fields and headers. Their values never reach a log line.
 */
const CREDENTIAL_NAMES = ['__token', 'token', 'access_token', 'passcode', 'password', 'authorization', 'x-auth-token'];

const CENSOR = '[redacted]';

/** `name=value` in a query string or form body, for every credential name (case-insensitive). */
const QUERY_CREDENTIAL = new RegExp(`([?&;](?:${CREDENTIAL_NAMES.join('|')})=)[^&#\\s"'\\\\]*`, 'gi');
/** The JSON WebSocket carries its token in the path: `/websocket/{token}`. */
const PATH_TOKEN = /(\/websocket\/)[^/?#\s"'\\]+/gi;
/** `Authorization: Bearer …` written out in text. */
const AUTH_SCHEME = /\b(Bearer)\s+[A-Za-z0-9._~+/=-]+/gi;
/** `"password":"…"` and friends inside JSON text (a serialized object, an error message quoting a body). */
const JSON_CREDENTIAL = new RegExp(`("(?:${CREDENTIAL_NAMES.join('|')})"\\s*:\\s*)"(?:[^"\\\\]|\\\\.)*"`, 'gi');
/** The same once more inside a JSON string (a log line's message holding JSON text): quotes are `\"`. */
const ESCAPED_JSON_CREDENTIAL = new RegExp(`(\\\\"(?:${CREDENTIAL_NAMES.join('|')})\\\\"\\s*:\\s*)\\\\"(?:[^\\\\]|\\\\[^"])*?\\\\"`, 'gi');

/**
 * Text with every credential it carries replaced by `[redacted]`: query
 * parameters such as `__token`, the token in a `/websocket/{token}` path,
 * `Bearer …` values and credential fields of JSON text. For URLs and any
 * other string that is about to be logged.
 */
export function redactCredentials(text: string): string {
  return text
    .replace(QUERY_CREDENTIAL, `$1${CENSOR}`)
    .replace(PATH_TOKEN, `$1${CENSOR}`)
    .replace(AUTH_SCHEME, `$1 ${CENSOR}`)
    .replace(JSON_CREDENTIAL, `$1"${CENSOR}"`)
    .replace(ESCAPED_JSON_CREDENTIAL, `$1\\"${CENSOR}\\"`);
}

/** Object paths pino blanks in every log object: credential headers and fields, at the top and one level down. */
export const REDACT_PATHS: readonly string[] = [
  ...['.authorization', '["x-auth-token"]', '.cookie'].flatMap((h) => [`headers${h}`, `req.headers${h}`, `request.headers${h}`]),
  ...['password', 'passcode', 'token', 'access_token', '__token'].flatMap((k) => [k, `*.${k}`]),
];

/**
 * Options of every Herald logger: credentials are blanked in objects
 * (`redact`) and, as a last line, in the finished line itself (a URL or an
 * error message that quotes one), whoever wrote it.
 */
export function logOptions(config: Pick<Config, 'logLevel'>): LoggerOptions {
  return {
    level: config.logLevel,
    redact: { paths: [...REDACT_PATHS], censor: CENSOR },
    hooks: { streamWrite: redactCredentials },
  };
}

/** Structured JSON logs; human-readable when attached to a terminal (or logPretty=true). */
export function createLogger(config: Pick<Config, 'logLevel' | 'logPretty'>): Logger {
  const pretty = config.logPretty === 'true' || (config.logPretty === 'auto' && process.stdout.isTTY === true);
  if (pretty) {
    return pino({
      ...logOptions(config),
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  return pino({ ...logOptions(config), base: { pid: process.pid } });
}
