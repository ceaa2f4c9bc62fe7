import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** scrypt parameters: N=2^15, r=8, p=1 (the OWASP baseline); 32 MiB of memory per hash. */
const N = 32768;
const R = 8;
const P = 1;
const KEYLEN = 32;

/**
 * Each hash costs ~90 ms of CPU and 32 MiB, so a flood of logins (rotating
 * names defeats any per-name limit) could take every core and a lot of
 * memory. At most RUNNING_MAX hashes run at once; the rest wait their turn,
 * and callers refuse new checks while WAITING_MAX already wait
 * (`passwordChecksBusy`), so the cost of a flood is bounded whatever its size.
 */
const RUNNING_MAX = 2;
const WAITING_MAX = 32;
let running = 0;
const waiting: (() => void)[] = [];

/** True when so many password checks wait that a new one should be refused (try again shortly). */
export function passwordChecksBusy(): boolean {
  return waiting.length >= WAITING_MAX;
}

async function scryptAsync(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  // A finished hash hands its slot straight to the next waiter, so no newcomer can slip in between.
  if (running >= RUNNING_MAX) await new Promise<void>((resolve) => waiting.push(resolve));
  else running++;
  try {
    return await new Promise((resolve, reject) =>
      scrypt(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))),
    );
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

/** Returns `scrypt$N$r$p$salt$hash` (base64url), self-describing so parameters can change later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, KEYLEN, { N, r: R, p: P, maxmem: 64 * 1024 * 1024 });
  return ['scrypt', N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const salt = Buffer.from(parts[4]!, 'base64url');
  const expected = Buffer.from(parts[5]!, 'base64url');
  const key = await scryptAsync(password, salt, expected.length, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 });
  return timingSafeEqual(key, expected);
}

/** A random password for the first admin: 18 bytes, base64url (24 characters). */
export function randomPassword(): string {
  return randomBytes(18).toString('base64url');
}
