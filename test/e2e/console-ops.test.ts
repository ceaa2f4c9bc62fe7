/**
 * The console's operations pages in Chromium: a retained message appears,
 * is viewed as text and hex with its properties, and is deleted; node
 * health shows the listeners with their ports and caps, and an alarm near
 * a cap; a queue's held messages are listed; webhook events that went to
 * the dead list (a receiver that was down) are replayed and delivered.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { answerDialog, browserMissing, consoleLogin, DESKTOP, openSection, PHONE, shot, TestBrowser, type WatchedPage } from '../helpers/browser.js';
import { ADMIN_PASSWORD, api, login, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

describe('retained messages, node health, queues and webhooks in Chromium', { skip: browserMissing() }, () => {
  let s: TestServer;
  let browser: TestBrowser;
  let hook: WebhookReceiver;
  let admin: string;

  before(async () => {
    hook = await WebhookReceiver.start();
    // The receiver is down from the start: the first event fails its one attempt and goes dead.
    await hook.down();
    s = await startServer({
      stompMaxConnections: 3,
      webhooks: [{ url: hook.url, events: ['message.published'], topics: ['ops/hooked'], secret: hook.secret }],
      webhookMaxAttempts: 1,
      webhookRetryBaseMs: 10,
      webhookTimeoutMs: 1000,
    });
    admin = await login(s.url);
    browser = await TestBrowser.launch();
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
    await hook?.stop();
  });

  const noErrors = (w: WatchedPage): void => {
    assert.deepEqual(w.pageErrors, []);
    assert.deepEqual(w.consoleErrors, []);
  };

  it('shows a retained message with its properties as text and hex, and deletes it', async () => {
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${s.server.address('mqtt').port}`, { username: 'admin', password: ADMIN_PASSWORD, protocolVersion: 5, reconnectPeriod: 0 });
    await pub.publishAsync('ops/lamp', 'on', { qos: 1, retain: true, properties: { contentType: 'text/plain', userProperties: { room: 'hall' } } });
    await pub.publishAsync('ops/blob', Buffer.from([0xde, 0xad, 0xbe, 0xef]), { qos: 1, retain: true });
    await pub.endAsync();
    for (const [width, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      const w = await browser.page(viewport);
      const { page } = w;
      await consoleLogin(page, s.url);
      await openSection(page, 'Retained');
      const lamp = page.locator('#retained tr', { hasText: 'ops/lamp' });
      await lamp.waitFor();
      assert.equal(await lamp.locator('td[data-label="Payload"]').innerText(), 'on');
      assert.match(await page.locator('#retained tr', { hasText: 'ops/blob' }).locator('td[data-label="Payload"]').innerText(), /hex deadbeef/);
      await lamp.getByRole('button', { name: 'View' }).click();
      const detail = page.locator('#retained-detail');
      await detail.getByRole('heading', { name: 'Retained on ops/lamp' }).waitFor();
      assert.match(await detail.innerText(), /Content type\s+text\/plain/);
      assert.match(await detail.innerText(), /User properties\s+room=hall/);
      assert.equal(await page.locator('#retained-payload').innerText(), 'on');
      await detail.getByRole('button', { name: 'Hex' }).click();
      assert.equal(await page.locator('#retained-payload').innerText(), '6f 6e');
      await shot(page, `console-retained-view-${width}`);
      noErrors(w);
    }
    const w = await browser.page(DESKTOP);
    await consoleLogin(w.page, s.url);
    await openSection(w.page, 'Retained');
    const row = w.page.locator('#retained tr', { hasText: 'ops/lamp' });
    await row.getByRole('button', { name: 'Delete' }).click();
    await answerDialog(w.page, 'Delete the retained message on ops/lamp?', 'Delete');
    await w.page.locator('#banner', { hasText: 'Deleted the retained message on ops/lamp.' }).waitFor();
    await row.waitFor({ state: 'detached' });
    assert.deepEqual((await s.server.ctx.store.listRetained()).map((r) => r.topic), ['ops/blob']);
    noErrors(w);
  });

  it('shows node health: the listeners with their ports and caps, and an alarm when one is near its cap', async () => {
    const conns: RawStomp[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await RawStomp.tcp(s.server.address('stomp').port);
      await c.connect({ login: 'admin', passcode: ADMIN_PASSWORD });
      conns.push(c);
    }
    for (const [width, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      const w = await browser.page(viewport);
      const { page } = w;
      await consoleLogin(page, s.url);
      await openSection(page, 'Node health');
      const node = page.locator('#nodes .node').first();
      await node.locator('td', { hasText: 'STOMP over TCP' }).waitFor();
      for (const a of s.server.addresses) {
        const row = node.locator('tr', { has: page.locator('td[data-label="Listener"]', { hasText: new RegExp(`^${a.name}$`) }) });
        assert.equal(await row.locator('td[data-label="Address"]').innerText(), `${a.host}:${a.port}`);
        assert.equal(await row.locator('td[data-label="TLS"]').innerText(), 'no');
      }
      const stomp = node.locator('tr', { has: page.locator('td[data-label="Listener"]', { hasText: /^stomp$/ }) });
      assert.equal(await stomp.locator('td[data-label="Connections"]').innerText(), '3 of 3');
      assert.match(await node.locator('.alarms').innerText(), /Critical: listener stomp holds 3 of its 3 connections \(stompMaxConnections\)/);
      assert.match(await node.innerText(), /Store\s+SQLite: answers/);
      assert.match(await node.innerText(), /Redis\s+not used \(a single node\)/);
      await shot(page, `console-node-health-alarm-${width}`);
      noErrors(w);
    }
    for (const c of conns) c.close();
  });

  it('lists a queue\'s waiting messages', async () => {
    for (const body of ['first job', 'second job']) await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/queue/ops-work', body } });
    const w = await browser.page(DESKTOP);
    const { page } = w;
    await consoleLogin(page, s.url);
    await openSection(page, 'Queues');
    const row = page.locator('#queues tr', { hasText: '/queue/ops-work' });
    await row.waitFor();
    assert.equal(await row.locator('td[data-label="Messages"]').innerText(), '2');
    assert.equal(await row.locator('td[data-label="Consumers"]').innerText(), '0');
    await row.getByRole('button', { name: 'Messages' }).click();
    const detail = page.locator('#queue-detail');
    await detail.getByRole('heading', { name: 'Messages on /queue/ops-work' }).waitFor();
    assert.deepEqual(await detail.locator('td[data-label="Payload"]').allInnerTexts(), ['first job', 'second job']);
    assert.deepEqual(await detail.locator('td[data-label="State"]').allInnerTexts(), ['waiting for a consumer', 'waiting for a consumer']);
    await shot(page, 'console-queues-detail-desktop');
    noErrors(w);
  });

  it('replays webhook events from the dead list once the receiver is back', async () => {
    await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/ops.hooked', body: 'an event' } });
    const dead = async () => (await api<unknown[]>(s.url, 'GET', '/api/admin/webhooks/dead', { token: admin })).body.data.length;
    for (let i = 0; i < 400 && (await dead()) === 0; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(await dead(), 1, 'the event went dead: the receiver was down');
    for (const [width, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      const w = await browser.page(viewport);
      await consoleLogin(w.page, s.url);
      await openSection(w.page, 'Webhooks');
      await w.page.locator('#webhook-dead tr', { hasText: 'message.published' }).waitFor();
      assert.equal(await w.page.locator('#webhook-backlog tr', { hasText: hook.url }).locator('td[data-label="Dead"]').innerText(), '1');
      await shot(w.page, `console-webhooks-dead-${width}`);
      noErrors(w);
    }
    await hook.up();
    const w = await browser.page(DESKTOP);
    const { page } = w;
    await consoleLogin(page, s.url);
    await openSection(page, 'Node health');
    await page.locator('#cluster-alarms li', { hasText: /on the dead list/ }).waitFor();
    await openSection(page, 'Webhooks');
    const row = page.locator('#webhook-dead tr', { hasText: 'message.published' });
    await row.getByRole('button', { name: 'Replay' }).click();
    await answerDialog(page, /^Send dead event \d+ again\?$/, 'Replay');
    await page.locator('#banner', { hasText: '1 event put back in the outbox.' }).waitFor();
    await hook.until(() => hook.ofType('message.published').length === 1, 'the replayed event');
    assert.equal(hook.requests.every((r) => r.valid), true);
    await page.locator('#webhook-delivered tr', { hasText: 'message.published' }).waitFor();
    await page.locator('#webhook-dead', { hasText: 'The dead list is empty.' }).waitFor();
    const audit = await api<{ records: { action: string }[] }>(s.url, 'GET', '/api/admin/audit?action=webhook', { token: admin });
    assert.deepEqual(audit.body.data.records.map((r) => r.action), ['webhook.replay']);
    noErrors(w);
  });
});
