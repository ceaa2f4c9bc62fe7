/** Runs the real `herald` command as a child process (through tsx, from source). */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Flags that bind every plain listener on loopback, on free ports. */
export const LOOPBACK_PORT_FLAGS = ['--host', '127.0.0.1', '--http-port', '0', '--stomp-port', '0', '--mqtt-port', '0'];

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

export interface HeraldProcess {
  child: ChildProcess;
  stdout: string[];
  stderr: string;
  /** Resolves with the first stdout line matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `env` adds to (or replaces) a bare environment in which SIGTERM is the fast
 * shutdown (both drain windows 0); a test of the drain sets them itself.
 */
export function runHerald(args: string[], env: Record<string, string> = {}): HeraldProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    env: { PATH: process.env['PATH'] ?? '', HERALD_LOG_PRETTY: 'false', HERALD_DRAIN_READY_SECONDS: '0', HERALD_DRAIN_SECONDS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const proc: HeraldProcess = {
    child,
    stdout,
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    waitFor(re, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          for (const line of stdout) {
            const m = re.exec(line);
            if (m) {
              resolve(m);
              return true;
            }
          }
          return false;
        };
        if (check()) return;
        const timer = setTimeout(() => {
          child.stdout!.off('data', onData);
          reject(new Error(`timed out waiting for ${re}; stdout: ${stdout.join('\n')}\nstderr: ${proc.stderr}`));
        }, timeoutMs);
        const onData = (): void => {
          if (check()) {
            clearTimeout(timer);
            child.stdout!.off('data', onData);
          }
        };
        child.stdout!.on('data', onData);
        void proc.exited.then(() => {
          if (!check()) {
            clearTimeout(timer);
            reject(new Error(`herald exited before printing ${re}; stderr: ${proc.stderr}`));
          }
        });
      });
    },
  };
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    stdout.push(...lines);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (proc.stderr += chunk));
  return proc;
}

/** Runs a short CLI command to completion. */
export async function runCommand(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runHerald(args, env);
  const { code } = await p.exited;
  await new Promise((r) => setImmediate(r));
  return { code, stdout: p.stdout.join('\n'), stderr: p.stderr };
}

/** Runs a short CLI command with `input` on its standard input (a pipe, not a terminal). */
export async function runCommandWithInput(
  args: string[],
  input: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    env: { PATH: process.env['PATH'] ?? '', HERALD_LOG_PRETTY: 'false', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdin!.end(input);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  return { code, stdout: stdout.replace(/\n$/, ''), stderr };
}

/** The command line that runs the CLI from source, for tests that spawn it their own way (a pseudo-terminal). */
export const HERALD_FROM_SOURCE: readonly string[] = [process.execPath, '--import', 'tsx', CLI];
