/**
 * The JSON envelope every HTTP answer uses: {"code":200,"message":"OK","data":…}.
 * Errors carry the HTTP status as `code` and a message a person can act on.
 */
export interface Envelope<T> {
  code: number;
  message: string;
  data: T;
}

export function ok<T>(data: T): Envelope<T> {
  return { code: 200, message: 'OK', data };
}

/** Thrown by route handlers; the error handler turns it into an envelope. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly data: unknown = null,
  ) {
    super(message);
  }
}

export const badRequest = (message: string): HttpError => new HttpError(400, message);
export const notFound = (message: string): HttpError => new HttpError(404, message);
export const forbidden = (message: string): HttpError => new HttpError(403, message);
