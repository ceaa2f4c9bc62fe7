/**
 * Herald's HTTP API as the console calls it. The admin's token lives in
 * sessionStorage; a 401 ends the console session, and the page set with
 * `whenSessionEnds` (the login form) takes over with the reason.
 */
import { showError } from './dom.js';
import { stopLive } from './live.js';

export const TOKEN_KEY = 'herald.token';
/** The id of the admin logged in (so a page can warn before they lock themselves out). */
export const ME_KEY = 'herald.me';

let sessionEnded: (message: string) => void = () => undefined;

/** What to show when the server ends the session (a 401): the login form, with this message. */
export function whenSessionEnds(show: (message: string) => void): void {
  sessionEnded = show;
}

export class ApiError extends Error {
  constructor(
    message: string,
    /** The HTTP status; 0 when the server could not be reached. */
    readonly status: number,
  ) {
    super(message);
  }
}

/** One call to Herald's API; a 401 ends the console session, other errors carry the server's message. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: { ...(token ? { 'x-auth-token': token } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiError(`${method} ${path}: the server could not be reached; check that it is running and try again`, 0);
  }
  let parsed: { code: number; message: string; data: T };
  try {
    parsed = (await res.json()) as typeof parsed;
  } catch {
    throw new ApiError(`${method} ${path}: the server answered ${res.status} without JSON`, res.status);
  }
  if (res.status === 401 && path !== '/v1/login') {
    sessionStorage.removeItem(TOKEN_KEY);
    stopLive();
    sessionEnded(`Your session has ended (${parsed.message}). Log in again.`);
    throw new ApiError(parsed.message, 401);
  }
  if (!res.ok) throw new ApiError(parsed.message || `${method} ${path} failed with ${res.status}`, res.status);
  return parsed.data;
}

/** Runs an action, showing its error in the banner instead of throwing. */
export async function attempt(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    if (sessionStorage.getItem(TOKEN_KEY)) showError((err as Error).message);
  }
}
