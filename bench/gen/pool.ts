/**
 * The coordinator's side of the generator's worker processes: starts them
 * (through sh, so each gets its open-file soft limit raised to the hard
 * one), sends commands and awaits answers, relays delivery counts between
 * them, and stops them by their PIDs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RAISE_NOFILE } from '../lib/proc.js';
import { stopProcess } from '../lib/stop.js';
import type { Command } from './worker.js';

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export class WorkerPool {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(private readonly children: ChildProcess[]) {
    children.forEach((child, i) => {
      child.on('message', (m: { id?: number; result?: unknown; error?: string; t?: string }) => {
        if (m.t === 'acks') {
          // Delivery counts for publishers in other processes.
          children.forEach((other, j) => {
            if (j !== i && other.connected) other.send(m);
          });
          return;
        }
        const p = m.id !== undefined ? this.pending.get(m.id) : undefined;
        if (!p) return;
        this.pending.delete(m.id!);
        if (m.error !== undefined) p.reject(new Error(`generator worker ${i}: ${m.error}`));
        else p.resolve(m.result);
      });
      child.once('exit', (code, signal) => {
        for (const [id, p] of this.pending) {
          p.reject(new Error(`generator worker ${i} exited (${signal ?? code}) with a command unanswered`));
          this.pending.delete(id);
        }
      });
    });
  }

  static async start(n: number): Promise<WorkerPool> {
    const children = Array.from({ length: n }, (_, i) =>
      spawn('/bin/sh', ['-c', RAISE_NOFILE, process.execPath, '--import', 'tsx', WORKER], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        serialization: 'advanced',
        env: { ...process.env, BENCH_WORKER_INDEX: String(i) },
      }),
    );
    const pool = new WorkerPool(children);
    // Ready once each answers a command.
    await Promise.all(children.map((_, i) => pool.ask(i, { t: 'cpu' })));
    return pool;
  }

  get size(): number {
    return this.children.length;
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid!);
  }

  ask<T = unknown>(i: number, command: Command): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.children[i]!.send({ id, ...command });
    });
  }

  all<T = unknown>(command: Command | ((i: number) => Command)): Promise<T[]> {
    return Promise.all(this.children.map((_, i) => this.ask<T>(i, typeof command === 'function' ? command(i) : command)));
  }

  /** CPU seconds each worker has used so far. */
  cpu(): Promise<number[]> {
    return this.all<number>({ t: 'cpu' });
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (c, i) => {
        try {
          if (c.connected) await Promise.race([this.ask(i, { t: 'exit' }), new Promise((r) => setTimeout(r, 2000))]);
        } catch {
          // exiting anyway
        }
        await stopProcess(c, 3000);
      }),
    );
  }
}
