/**
 * What was acknowledged survives kill -9: messages for an offline user
 * (HTTP answer) and queue messages (STOMP RECEIPT).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, it, after } from 'node:test';
import { api, login, tempDir } from '../helpers/server.js';
import { runHerald, type HeraldProcess } from '../helpers/process.js';
import { JsonClient, type MessageData } from '../helpers/json-ws.js';
import { RawStomp } from '../helpers/stomp.js';

const dir = tempDir('herald-durable-');
after(() => rmSync(dir, { recursive: true, force: true }));
const env = { HERALD_DATA_DIR: dir, HERALD_ADMIN_PASSWORD: 'admin-durable-1', HERALD_LOG_LEVEL: 'warn' };
const flags = ['serve', '--host', '127.0.0.1', '--http-port', '0', '--stomp-port', '0', '--mqtt-port', '0'];

async function start(): Promise<{ p: HeraldProcess; url: string; stomp: number }> {
  const p = runHerald(flags, env);
  const [, , http] = (await p.waitFor(/^listening http (\S+):(\d+)$/))!;
  const [, , stomp] = (await p.waitFor(/^listening stomp (\S+):(\d+)$/))!;
  return { p, url: `http://127.0.0.1:${http}`, stomp: Number(stomp) };
}

describe('durability across SIGKILL', () => {
  it('delivers every acknowledged message exactly once, in order, after kill -9 and restart', async () => {
    const first = await start();
    const admin = await login(first.url, 'admin', 'admin-durable-1');
    assert.equal((await api(first.url, 'POST', '/api/users', { token: admin, body: { name: 'frank', password: 'frank-password' } })).status, 200);
    const ids: string[] = [];
    for (let i = 1; i <= 25; i++) {
      const r = await api<{ id: string }>(first.url, 'POST', '/api/message/sendMessage', {
        token: admin,
        body: { content: `message ${i}`, receiver: ['frank'], title: `#${i}`, type: 0 },
      });
      assert.equal(r.status, 200);
      ids.push(r.body.data.id);
    }
    // A queue message acknowledged by RECEIPT.
    const stomp = await RawStomp.tcp(first.stomp);
    await stomp.connect({ login: 'admin', passcode: 'admin-durable-1' });
    stomp.send('SEND\ndestination:/queue/jobs\nreceipt:kept\n\nrender video 7\0');
    await stomp.next('RECEIPT');

    first.p.child.kill('SIGKILL');
    assert.equal((await first.p.exited).signal, 'SIGKILL');

    const second = await start();
    const token = await login(second.url, 'frank', 'frank-password');
    const ws = await JsonClient.open(second.url.replace('http', 'ws') + '/websocket/' + token);
    const got: string[] = [];
    for (let i = 0; i < 25; i++) got.push(((await ws.next('message')).data as MessageData).id);
    assert.deepEqual(got, ids);
    await ws.sync();
    assert.equal(ws.events.filter((e) => e.event === 'message').length, 0, 'exactly once');
    ws.close();

    const worker = await RawStomp.tcp(second.stomp);
    await worker.connect({ login: 'admin', passcode: 'admin-durable-1' });
    worker.send('SUBSCRIBE\nid:1\ndestination:/queue/jobs\n\n\0');
    assert.equal((await worker.next('MESSAGE')).body.toString(), 'render video 7');
    worker.close();
    second.p.child.kill('SIGTERM');
    assert.equal((await second.p.exited).code, 0);
  });
});
