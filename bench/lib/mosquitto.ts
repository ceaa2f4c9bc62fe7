/**
 * Mosquitto for the same-machine comparison: installed from Debian's
 * packages when missing, started by us with a generated configuration on a
 * free loopback port, stopped by its PID.
 *
 * BENCH_MOSQUITTO_AUTH picks how its clients log in:
 *  - `anonymous` (default): `allow_anonymous true`, no password check; the
 *    cheapest connect Mosquitto can do, so Herald's token logins are
 *    compared with Mosquitto at its fastest;
 *  - `password`: a password file (PBKDF2-SHA512, 101 iterations, as
 *    mosquitto_passwd writes it) and user name + password on CONNECT.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RAISE_NOFILE } from './proc.js';
import { stopProcess } from './stop.js';
import type { Account, Target } from './target.js';

export type MosquittoAuth = 'anonymous' | 'password';

export function mosquittoAuth(): MosquittoAuth {
  const v = process.env['BENCH_MOSQUITTO_AUTH'] ?? 'anonymous';
  if (v !== 'anonymous' && v !== 'password') throw new Error(`BENCH_MOSQUITTO_AUTH must be anonymous or password, not "${v}"`);
  return v;
}

function which(name: string): string | undefined {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) if (existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

/** The mosquitto binary; installs Debian's package when it is missing (we run as root; otherwise through sudo). */
export function ensureMosquitto(): string {
  let bin = which('mosquitto');
  if (bin) return bin;
  console.log('  Mosquitto is not installed: installing it from Debian\'s packages (apt-get install -y mosquitto) …');
  const root = process.getuid?.() === 0;
  const run = (args: string[]): void => {
    execFileSync(root ? args[0]! : 'sudo', root ? args.slice(1) : args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  };
  try {
    run(['apt-get', 'install', '-y', '-qq', 'mosquitto']);
  } catch {
    run(['apt-get', 'update', '-qq']);
    run(['apt-get', 'install', '-y', '-qq', 'mosquitto']);
  }
  bin = which('mosquitto');
  if (!bin) throw new Error('apt-get install mosquitto finished but no mosquitto binary is in /usr/sbin or /usr/bin: install it by hand and run again');
  return bin;
}

export function mosquittoVersion(bin: string): string {
  try {
    execFileSync(bin, ['-h'], { stdio: 'pipe' });
  } catch (err) {
    // `mosquitto -h` prints its version and exits with 3.
    const out = String((err as { stdout?: Buffer }).stdout ?? '');
    const m = /mosquitto version (\S+)/.exec(out);
    if (m) return m[1]!;
  }
  return 'unknown';
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Mosquitto did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startMosquitto(opts: { users: number }): Promise<Target> {
  const bin = ensureMosquitto();
  const auth = mosquittoAuth();
  const dir = mkdtempSync(join(tmpdir(), 'mosquitto-bench-'));
  const accounts: Account[] = [];
  for (let i = 0; i < Math.max(1, opts.users); i++) accounts.push({ username: `bench-${i + 1}`, password: `bench-${i + 1}-password` });
  if (auth === 'password') {
    const passwd = join(dir, 'passwd');
    accounts.forEach((a, i) => execFileSync('mosquitto_passwd', [...(i === 0 ? ['-c'] : []), '-b', passwd, a.username, a.password], { stdio: 'ignore' }));
  }
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      auth === 'password' ? `allow_anonymous false\npassword_file ${join(dir, 'passwd')}` : 'allow_anonymous true',
      'persistence false',
      'max_connections -1',
      // Keep root rather than switch to the mosquitto user, which could not read the files in this directory.
      'user root',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  const child = spawn('/bin/sh', ['-c', RAISE_NOFILE, bin, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Its log, without the warning that it runs as root (it does, to read the files we wrote).
  child.stderr!.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) if (line.trim() && !/should not be run as root/.test(line)) console.error(`  mosquitto: ${line}`);
  });
  const stop = async (): Promise<void> => {
    await stopProcess(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.race([
      waitForPort(port, 10_000),
      new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`Mosquitto exited with ${code} at start (configuration ${conf})`)))),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    kind: 'mosquitto',
    label: `Mosquitto ${mosquittoVersion(bin)} (${auth === 'password' ? 'password file' : 'anonymous'})`,
    pid: child.pid!,
    mqttPort: port,
    accounts: auth === 'password' ? accounts : accounts.map((a) => ({ username: a.username, password: '' })),
    stop,
  };
}
