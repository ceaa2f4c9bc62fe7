/**
 * The receivers of docs/backend-integration.md, as written there: the Node
 * and the Python one are taken out of the guide, run, and sent real events
 * by a real Herald; each also refuses a forged signature and a replayed old
 * request, and handles a repeated event id once.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, it, before, after } from 'node:test';
import { api, login, startServer, tempDir, type TestServer } from '../helpers/server.js';
import { sendMessage } from '../helpers/messages.js';
import { freePort } from '../helpers/services.js';
import { RawStomp } from '../helpers/stomp.js';

const GUIDE = readFileSync(new URL('../../docs/backend-integration.md', import.meta.url), 'utf8');

/** The fenced block of `lang` whose first line starts with `first`. */
function block(lang: string, first: string): string {
  const found = [...GUIDE.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!).find((b) => b.startsWith(first));
  assert.ok(found, `docs/backend-integration.md has a ${lang} block starting with ${first}`);
  return found;
}

interface Running {
  child: ChildProcess;
  url: string;
  out: () => string;
}

async function run(cmd: string, file: string, secret: string): Promise<Running> {
  const port = await freePort();
  const child = spawn(cmd, [file], { env: { PATH: process.env['PATH'] ?? '', PORT: String(port), HOST: '127.0.0.1', HERALD_WEBHOOK_SECRET: secret }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => (s.end(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${cmd} ${file} did not listen: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url: `http://127.0.0.1:${port}/`, out: () => out };
}

function signed(secret: string, body: string, t = Math.floor(Date.now() / 1000)): Record<string, string> {
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return { 'content-type': 'application/json', 'herald-signature': `t=${t},v1=${v1}` };
}

describe('the receivers of the guide', () => {
  const dir = tempDir('herald-guide-');
  const secret = 'guide-secret-' + randomUUID();
  const receivers: Record<string, Running> = {};
  let s: TestServer;
  before(async () => {
    writeFileSync(join(dir, 'receiver.mjs'), block('js', '// receiver.mjs'));
    writeFileSync(join(dir, 'receiver.py'), block('python', '# receiver.py'));
    receivers['node'] = await run(process.execPath, join(dir, 'receiver.mjs'), secret);
    receivers['python'] = await run('python3', join(dir, 'receiver.py'), secret);
    s = await startServer({
      webhooks: Object.entries(receivers).map(([name, r]) => ({ name, url: r.url, events: ['client.connected', 'message.undelivered'], secret })),
    });
  });
  after(async () => {
    await s?.stop();
    for (const r of Object.values(receivers)) r.child.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const name of ['node', 'python']) {
    it(`${name}: takes Herald's events, refuses forged and replayed requests, handles a repeated id once`, async () => {
      const r = receivers[name]!;
      const admin = await login(s.url);
      const c = await RawStomp.tcp(s.server.address('stomp').port);
      await c.connect({ login: 'admin', passcode: 'admin-secret-pw' });
      const note = `guide-${name}-${randomUUID()}`;
      // A user with no session anywhere: the message's receiver.
      const user = await api(s.url, 'POST', '/api/users', { token: admin, body: { name: `off-${name}`, password: 'off-password-1', role: 'user' } });
      assert.equal(user.status, 200, user.body.message);
      await sendMessage(s, admin, { title: 'push', content: note, type: 0, receiver: [`off-${name}`] });
      const deadline = Date.now() + 10_000;
      while (!(r.out().includes('client.connected') && r.out().includes(note))) {
        assert.ok(Date.now() < deadline, `the ${name} receiver printed both events; it printed: ${r.out()}`);
        await new Promise((x) => setTimeout(x, 50));
      }
      // Each printed line is the type and the event's data as JSON.
      const printed = r.out().trim().split('\n').map((l) => ({ type: l.slice(0, l.indexOf(' ')), data: JSON.parse(l.slice(l.indexOf(' ') + 1)) as Record<string, unknown> }));
      assert.ok(printed.some((p) => p.type === 'client.connected' && p.data['user'] === 'admin' && String(p.data['sessionId']).startsWith('stomp-')));
      const push = printed.find((p) => p.type === 'message.undelivered' && (p.data['message'] as { content: string }).content === note);
      assert.ok(push, 'the push event');
      assert.equal(push.data['receiverName'], `off-${name}`);
      assert.equal(push.data['source'], 'message-service');
      c.close();

      const body = JSON.stringify({ id: randomUUID(), type: 'webhook.test', createdAt: new Date().toISOString(), data: { marker: `once-${name}` } });
      const post = (headers: Record<string, string>) => fetch(r.url, { method: 'POST', headers, body }).then((x) => x.status);
      assert.equal(await post({ ...signed('wrong-secret', body) }), 400, 'forged');
      assert.equal(await post({ ...signed(secret, body, Math.floor(Date.now() / 1000) - 600) }), 400, 'ten minutes old');
      assert.equal(await post({ 'content-type': 'application/json' }), 400, 'unsigned');
      assert.equal(await post(signed(secret, body)), 204);
      assert.equal(await post(signed(secret, body)), 204, 'a repeat is acknowledged');
      await new Promise((x) => setTimeout(x, 100));
      assert.equal(r.out().split(`once-${name}`).length - 1, 1, 'and handled once');
    });
  }
});
