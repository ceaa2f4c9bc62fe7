import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, it, after } from 'node:test';
import type { CloseReason, Session } from '../../src/core/session.js';
import { api, startServer, tempDir } from '../helpers/server.js';
import { runCommand, runHerald, LOOPBACK_PORT_FLAGS } from '../helpers/process.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dataDir(): string {
  const d = tempDir('herald-life-');
  dirs.push(d);
  return d;
}
const portFlags = LOOPBACK_PORT_FLAGS;

describe('server process lifecycle', () => {
  it('starts, prints the listening line and the admin password once, logs in, and drains on SIGTERM', async () => {
    const dir = dataDir();
    const p = runHerald(['serve', ...portFlags, '--data-dir', dir]);
    const [, password] = (await p.waitFor(/^admin password: (\S+)$/))!;
    const [, host, port] = (await p.waitFor(/^listening http (\S+):(\d+)$/))!;
    assert.equal(host, '127.0.0.1');
    const url = `http://${host}:${port}`;
    const r = await api<{ authToken: string }[]>(url, 'POST', '/v1/login', { body: { username: 'admin', password } });
    assert.equal(r.status, 200);
    const started = Date.now();
    p.child.kill('SIGTERM');
    const { code } = await p.exited;
    assert.equal(code, 0, p.stderr);
    assert.ok(Date.now() - started < 5000, 'drains quickly');

    // Second start on the same data: no new password, the old one still works.
    const q = runHerald(['serve', ...portFlags, '--data-dir', dir]);
    const [, , port2] = (await q.waitFor(/^listening http (\S+):(\d+)$/))!;
    assert.ok(!q.stdout.some((l) => l.startsWith('admin password')));
    const again = await api(`http://127.0.0.1:${port2}`, 'POST', '/v1/login', { body: { username: 'admin', password } });
    assert.equal(again.status, 200);
    q.child.kill('SIGINT');
    assert.equal((await q.exited).code, 0);
  });

  it('uses HERALD_ADMIN_PASSWORD for the first admin and never prints it', async () => {
    const dir = dataDir();
    const p = runHerald(['serve', ...portFlags], { HERALD_DATA_DIR: dir, HERALD_ADMIN_PASSWORD: 'from-the-env-123' });
    const [, , port] = (await p.waitFor(/^listening http (\S+):(\d+)$/))!;
    assert.ok(!p.stdout.join('\n').includes('from-the-env-123'));
    const r = await api(`http://127.0.0.1:${port}`, 'POST', '/v1/login', { body: { username: 'admin', password: 'from-the-env-123' } });
    assert.equal(r.status, 200);
    p.child.kill('SIGTERM');
    assert.equal((await p.exited).code, 0);
  });

  it('stops at start-up on an invalid value, naming key, value and what is allowed', async () => {
    const r = await runCommand(['serve', '--data-dir', dataDir()], { HERALD_HTTP_PORT: 'abc' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /HERALD_HTTP_PORT = "abc"; httpPort must be a port from 0 to 65535 \(0: any free port\), or off/);
    const f = await runCommand(['serve', '--htp-port', '1']);
    assert.equal(f.code, 2);
    assert.match(f.stderr, /unknown option --htp-port/);
    const acl = await runCommand(['serve', ...portFlags, '--data-dir', dataDir(), '--acl-file', '/nonexistent/acl.json']);
    assert.equal(acl.code, 2);
    assert.match(acl.stderr, /aclFile \/nonexistent\/acl.json cannot be read as JSON/);
  });

  it('manages users and script tokens from the command line', async () => {
    const dir = dataDir();
    const env = { HERALD_DATA_DIR: dir, HERALD_ADMIN_PASSWORD: 'admin-pass-1' };
    const add = await runCommand(['user', 'add', 'svc', '--role', 'service', '--password', 'svc-password'], env);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /created user svc \(id \d+, role service\)/);
    const dup = await runCommand(['user', 'add', 'svc'], env);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /already exists/);
    const badRole = await runCommand(['user', 'add', 'x', '--role', 'root'], env);
    assert.match(badRole.stderr, /--role must be one of user, admin, service/);
    const gen = await runCommand(['user', 'add', 'walter'], env);
    assert.match(gen.stdout, /password: \S{20,}/);
    const list = await runCommand(['user', 'list'], env);
    assert.match(list.stdout, /svc\tservice/);
    assert.match(list.stdout, /walter\tuser/);
    const tok = await runCommand(['token', 'issue', 'svc'], env);
    assert.equal(tok.code, 0, tok.stderr);
    const token = tok.stdout.trim();
    const none = await runCommand(['token', 'issue', 'nobody'], env);
    assert.match(none.stderr, /no user named "nobody"/);

    const app = await runCommand(['app', 'add', 'coplay'], env);
    assert.equal(app.code, 0, app.stderr);
    const appClientId = /appClientId: (\S+)/.exec(app.stdout)?.[1];
    const appClientSecret = /appClientSecret: (\S+)/.exec(app.stdout)?.[1];
    assert.ok(appClientId && appClientSecret);
    assert.match((await runCommand(['app', 'list'], env)).stdout, /coplay/);

    const p = runHerald(['serve', ...portFlags], env);
    const [, , port] = (await p.waitFor(/^listening http (\S+):(\d+)$/))!;
    const tokenRes = await fetch(`http://127.0.0.1:${port}/openapi/rm/app/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ appClientId, appClientSecret }),
    });
    assert.equal(((await tokenRes.json()) as { code: number }).code, 200, 'the app made by the CLI gets tokens');
    const me = await api<{ name: string; role: string }>(`http://127.0.0.1:${port}`, 'GET', '/v1/me', { token });
    assert.deepEqual([me.body.data.name, me.body.data.role], ['svc', 'service']);
    p.child.kill('SIGTERM');
    assert.equal((await p.exited).code, 0);
  });

  it('prints help a person can follow', async () => {
    const r = await runCommand(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /herald serve/);
    assert.match(r.stdout, /HERALD_TOKEN_IDLE_SECONDS/);
    assert.match(r.stdout, /herald token issue NAME/);
  });
});

describe('graceful shutdown in process', () => {
  it('tells every connected session why, refuses new work, and closes the store', async () => {
    const s = await startServer();
    const told: CloseReason[] = [];
    const session: Session = {
      id: 's1',
      protocol: 'json-ws',
      principal: { userId: '1', name: 'admin', role: 'admin', credential: { kind: 'password' } },
      remoteAddress: '127.0.0.1',
      device: 'test',
      connectedAt: Date.now(),
      stats: () => ({ subscriptions: 0, unacked: 0 }),
      describe: () => ({ subscriptions: [], inflight: { messages: 0, bytes: 0 }, held: { messages: 0, bytes: 0 }, wire: { bytesIn: 0, bytesOut: 0, tls: false }, credential: 'password' }),
      close(reason) {
        told.push(reason);
        s.server.ctx.sessions.remove(session);
      },
    };
    s.server.ctx.sessions.add(session);
    await s.stop();
    assert.equal(told.length, 1);
    const [{ code, message, reconnectAfterMs }] = told as [CloseReason];
    assert.deepEqual([code, message], ['shutdown', 'server shutting down']);
    // Both drain windows are 0 in test servers: the clients are asked to come back within a second.
    assert.ok(reconnectAfterMs !== undefined && reconnectAfterMs >= 0 && reconnectAfterMs <= 1000);
    assert.equal(s.server.ctx.sessions.size, 0);
    await assert.rejects(fetch(s.url + '/healthz'));
  });
});
