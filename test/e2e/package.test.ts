/**
 * Packaging (issue 14, part 6): `npm pack` builds dist/ at prepack into a
 * tarball without sources or tests, and `npm install -g` of that tarball in
 * a temporary prefix gives a `herald` command that serves on the embedded
 * defaults (SQLite, no other service). Takes a minute or two: the install
 * fetches the dependencies (from npm's cache when it has them) and builds
 * better-sqlite3 when no prebuilt binary can be downloaded.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it, after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/server.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/** What packing needs from the working tree; node_modules is linked, not copied. */
const TREE = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE', 'src', 'web', 'scripts', 'docs', 'deploy'];

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** npm with the machine's own configuration (cache, nodedir) and no progress noise. */
async function npm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd,
    // Not the settings of an outer `npm test` (npm_config_*, npm_lifecycle_*): the user's own npm configuration.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k))), npm_config_update_notifier: 'false' },
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

describe('npm pack and npm install -g', () => {
  it('packs dist/ prebuilt, and the installed herald serves on the embedded defaults', async (t) => {
    const work = tempDir('herald-pack-');
    dirs.push(work);
    // Packing rebuilds dist/ (prepack): in a copy, so the dist/ other tests serve the console from never changes under them.
    const copy = join(work, 'tree');
    for (const entry of TREE) if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(copy, entry), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');

    let started = Date.now();
    await npm(['pack', '--pack-destination', work], copy);
    const packSeconds = (Date.now() - started) / 1000;
    const tarball = join(work, `herald-${VERSION}.tgz`);
    assert.ok(existsSync(tarball), `npm pack made ${tarball}: ${readdirSync(work).join(', ')}`);
    const files = (await run('tar', ['-tzf', tarball], { maxBuffer: 16 * 1024 * 1024 })).stdout.split('\n').filter(Boolean);
    for (const f of ['dist/cli.js', 'dist/server.js', 'dist/cli/check-config.js', 'dist/web/console/index.html', 'dist/web/demo/index.html', 'LICENSE', 'README.md', 'package.json', 'deploy/herald.service', 'docs/configuration.md']) {
      assert.ok(files.includes(`package/${f}`), `${f} is in the tarball`);
    }
    const unwanted = files.filter((f) => /^package\/(src|test|bench|web|scripts|node_modules)\//.test(f) || f.endsWith('.map') || f.endsWith('.ts'));
    assert.deepEqual(unwanted, [], 'no sources, tests or source maps');

    const prefix = join(work, 'prefix');
    started = Date.now();
    await npm(['install', '--global', '--prefix', prefix, '--prefer-offline', tarball], work);
    const installSeconds = (Date.now() - started) / 1000;
    const herald = join(prefix, 'bin', 'herald');
    assert.ok(existsSync(herald), 'npm linked the herald command');
    t.diagnostic(
      `tarball ${(statSync(tarball).size / 1024).toFixed(0)} KiB, ${files.length} files; npm pack ${packSeconds.toFixed(1)} s; npm install -g ${installSeconds.toFixed(1)} s`,
    );

    // The installed command, with a bare environment: node on the PATH, nothing else of this checkout.
    const env = {
      PATH: `${join(prefix, 'bin')}:${dirname(process.execPath)}:/usr/bin:/bin`,
      HERALD_LOG_PRETTY: 'false',
      HERALD_DRAIN_READY_SECONDS: '0',
      HERALD_DRAIN_SECONDS: '0',
    };
    assert.equal((await run('herald', ['--version'], { env, cwd: work })).stdout.trim(), VERSION);
    const child = spawn('herald', ['serve', '--host', '127.0.0.1', '--http-port', '0', '--stomp-port', '0', '--mqtt-port', '0', '--data-dir', join(work, 'data')], {
      env,
      cwd: work,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      let out = '';
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "listening http" in 30 s; stdout: ${out}\nstderr: ${err}`)), 30_000);
        child.stdout.setEncoding('utf8').on('data', (c: string) => {
          out += c;
          const m = /^listening http 127\.0\.0\.1:(\d+)$/m.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
        void exited.then((code) => reject(new Error(`herald exited (${code}) before listening; stderr: ${err}`)));
      });
      assert.match(out, /^admin password: \S+$/m, 'the first start creates the admin, as from source');
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(health.status, 200);
      assert.equal(((await health.json()) as { data: { status: string } }).data.status, 'ok');
      const consolePage = await fetch(`http://127.0.0.1:${port}/console/`);
      assert.equal(consolePage.status, 200, 'the console build is in the package');
      assert.match(await consolePage.text(), /<html/i);
      assert.ok(existsSync(join(work, 'data', 'herald.db')), 'embedded SQLite under the data directory');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, 'stops cleanly on SIGTERM');
  });
});
