/**
 * One question to the application's back end (the connect and ACL hooks):
 * a JSON POST with a time limit, no redirects, and an answer read up to a
 * size cap. Whatever goes wrong becomes a HookFailure in words (a timeout,
 * a status, an answer that is not JSON).
 */

import { ConfigError } from '../config.js';

/** Checks a hook's URL at start: http(s) only, so a typo stops start-up instead of refusing every client. */
export function hookUrl(key: string, url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`${key} must be an http:// or https:// URL (got ${JSON.stringify(url)})`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ConfigError(`${key} must be an http:// or https:// URL (got ${JSON.stringify(url)})`);
  return url;
}

/** The back end could not be asked, or did not answer usably; `message` says how. */
export class HookFailure extends Error {}

const MAX_ANSWER_BYTES = 64 * 1024;

export async function askBackEnd(url: string, body: unknown, timeoutMs: number): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
  } catch (err) {
    throw new HookFailure((err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err as Error).message);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new HookFailure(`it answered HTTP ${res.status}`);
  }
  try {
    return await readJson(res);
  } catch (err) {
    if (err instanceof HookFailure) throw err;
    throw new HookFailure((err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err as Error).message);
  }
}

/** The answer's JSON, read up to MAX_ANSWER_BYTES. */
async function readJson(res: Response): Promise<unknown> {
  const tooLarge = `the answer is over ${MAX_ANSWER_BYTES} bytes`;
  if (Number(res.headers.get('content-length') ?? 0) > MAX_ANSWER_BYTES) {
    await res.body?.cancel();
    throw new HookFailure(tooLarge);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      size += (chunk as Uint8Array).byteLength;
      if (size > MAX_ANSWER_BYTES) throw new HookFailure(tooLarge);
      chunks.push(chunk as Uint8Array);
    }
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HookFailure('the answer is not JSON');
  }
}
