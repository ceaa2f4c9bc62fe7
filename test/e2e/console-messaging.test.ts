/**
 * Messages, threads and clients in the console, in Chromium: every stored
 * message can be reached through the pager, the send form is cleared after
 * sending, threads name their members and say their last message in words,
 * a thread is closed only after asking, clients have sensible device names,
 * and "Revoke tokens" ends a session that logged in with a password.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { answerDialog, browserMissing, consoleLogin, DESKTOP, openSection, PHONE, shot, TestBrowser } from '../helpers/browser.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { connectLegacyTcp, wsUrl } from '../helpers/stomp.js';

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

describe('messages, threads and clients in Chromium', { skip: browserMissing() }, () => {
  let s: TestServer;
  let browser: TestBrowser;
  let admin: string;

  const addUser = async (name: string): Promise<string> => {
    const r = await api<{ id: string }>(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password' } });
    assert.equal(r.status, 200, r.body.message);
    return r.body.data.id;
  };

  before(async () => {
    s = await startServer();
    admin = await login(s.url);
    browser = await TestBrowser.launch();
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
  });

  it('reaches every one of 60 messages through the pager, and clears the send form after sending', async () => {
    await addUser('reader');
    for (let i = 1; i <= 60; i++) {
      const r = await api(s.url, 'POST', '/api/message/sendMessage', { token: admin, body: { receiver: ['reader'], title: `record ${i}`, content: `body ${i}`, type: 'NOTICE' } });
      assert.equal(r.status, 200, r.body.message);
    }
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    await openSection(page, 'Messages');
    const pagerText = page.locator('#messages .pager span');
    await pagerText.filter({ hasText: 'Page 1 of 3 (60 messages)' }).waitFor();
    assert.equal(await page.locator('#messages tbody tr').count(), 25);
    await page.getByRole('button', { name: 'Next ›' }).click();
    await pagerText.filter({ hasText: 'Page 2 of 3' }).waitFor();
    await page.getByRole('button', { name: 'Next ›' }).click();
    await pagerText.filter({ hasText: 'Page 3 of 3' }).waitFor();
    // The ten oldest, once out of reach, are here.
    const titles = await page.locator('#messages td[data-label="Title"]').allInnerTexts();
    assert.deepEqual(titles, ['record 10', 'record 9', 'record 8', 'record 7', 'record 6', 'record 5', 'record 4', 'record 3', 'record 2', 'record 1']);
    assert.equal(await page.getByRole('button', { name: 'Next ›' }).isDisabled(), true);
    await shot(page, 'console-messages-last-page');
    // Send: the form is emptied for the next message, and the list goes back to the newest.
    const form = page.getByRole('form', { name: 'Send a message' });
    await form.getByLabel(/Receivers/).fill('reader');
    await form.getByLabel('Title').fill('Maintenance tonight');
    await form.getByLabel('Content').fill('From 02:00 to 03:00');
    await form.getByRole('button', { name: 'Send' }).click();
    await page.locator('#banner', { hasText: /sent to 1 receiver/ }).waitFor();
    for (const label of [/Receivers/, 'Title', 'Content']) assert.equal(await form.getByLabel(label).inputValue(), '', `${String(label)} is cleared`);
    assert.equal(await form.getByLabel('Type').inputValue(), 'NOTICE', 'the type stays as chosen');
    await pagerText.filter({ hasText: 'Page 1 of 3 (61 messages)' }).waitFor();
    // Sending to everyone online asks first.
    await form.getByLabel('Title').fill('Everyone');
    await form.getByLabel('Content').fill('hello all');
    await form.getByRole('button', { name: 'Send' }).click();
    await answerDialog(page, 'Send to everyone online?', 'Cancel');
    assert.equal(await form.getByLabel('Title').inputValue(), 'Everyone', 'nothing sent, nothing cleared');
  });

  it('names thread members, says the last message in words, shows the thread as the chat client names it, and closes it after asking', async () => {
    const visitorId = await addUser('visitor7');
    await addUser('agent7');
    const created = await api(s.url, 'POST', '/api/v1/thread', {
      token: admin,
      body: { thread: 'org7/visitor/v7', members: [{ user: 'visitor7', role: 'visitor' }, { user: 'agent7', role: 'agent' }] },
    });
    assert.equal(created.status, 200, created.body.message);
    const visitor = await login(s.url, 'visitor7', 'visitor7-password');
    const agent = await login(s.url, 'agent7', 'agent7-password');
    const send = async (token: string, type: string, content: string, extra?: object, uid = randomUUID(), user?: object) => {
      const r = await api<unknown>(s.url, 'POST', '/api/v1/message/send', {
        token,
        body: { uid, type, content, thread: { topic: 'org7/visitor/v7' }, ...(extra ? { extra: JSON.stringify(extra) } : {}), ...(user ? { user } : {}) },
      });
      assert.equal(r.body.code, 200, r.body.message);
      return uid;
    };
    // The visitor's client names itself by its user id, as some clients do.
    const hello = await send(visitor, 'TEXT', 'Where is my parcel?', undefined, undefined, { uid: visitorId });
    await send(agent, 'READ', hello);
    const answer = await send(agent, 'TEXT', 'It left this morning.');
    await send(agent, 'RECALL', answer);
    await send(visitor, 'RATE_SUBMIT', hello, { score: 4, resolved: true });
    // A second thread whose last message is a receipt.
    await api(s.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'org8/visitor/v8', members: [{ user: 'visitor7', role: 'visitor' }, { user: 'agent7', role: 'agent' }] } });
    const question = randomUUID();
    for (const [token, type, content, uid] of [[visitor, 'TEXT', 'Anyone there?', question], [agent, 'READ', question, randomUUID()]] as const) {
      const r = await api(s.url, 'POST', '/api/v1/message/send', { token, body: { uid, type, content, thread: { topic: 'org8/visitor/v8' } } });
      assert.equal(r.body.code, 200, r.body.message);
    }
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    await openSection(page, 'Threads');
    const row = page.locator('#threads tr', { hasText: 'org7/visitor/v7' });
    await row.waitFor();
    assert.equal(await row.locator('td[data-label="Members"]').innerText(), 'visitor7 (visitor), agent7 (agent)');
    const last = await row.locator('td[data-label="Last message"]').innerText();
    assert.equal(last, 'visitor7 rated the service 4/5 (resolved)');
    const receiptRow = page.locator('#threads tr', { hasText: 'org8/visitor/v8' });
    assert.equal(await receiptRow.locator('td[data-label="Last message"]').innerText(), 'agent7 read a message', 'a receipt in words, not READ: <uuid>');
    assert.doesNotMatch(await page.locator('#threads').innerText(), UUID);
    // The thread as the chat demo names it (org7/visitor/v7), with the STOMP topic beside it.
    assert.match(await row.locator('td[data-label="Thread"]').innerText(), /^org7\/visitor\/v7\s+STOMP \/topic\/org7\.visitor\.v7$/);
    await row.getByRole('button', { name: 'Open' }).click();
    const detail = page.locator('#thread-detail');
    await detail.getByRole('heading', { name: 'Thread org7/visitor/v7 (open)' }).waitFor();
    const text = await detail.innerText();
    assert.doesNotMatch(text, UUID, 'no bare ids of messages');
    assert.deepEqual(await detail.locator('td[data-label="From"]').allInnerTexts(), ['visitor7', 'agent7', 'agent7', 'visitor7'], `names, not ids (the visitor's is ${visitorId})`);
    assert.match(text, /visitor7\s+TEXT\s+Where is my parcel\?\s+read by agent7/);
    assert.match(text, /agent7\s+RECALL\s+agent7 recalled a message/);
    assert.match(text, /It left this morning\. \(recalled\)/);
    assert.match(text, /visitor7\s+RATE_SUBMIT\s+visitor7 rated the service 4\/5 \(resolved\)/);
    await shot(page, 'console-thread-detail');
    // Closing asks first; dismissed, the thread stays open.
    await detail.getByRole('button', { name: 'Close thread' }).click();
    await answerDialog(page, 'Close the thread org7/visitor/v7?', 'Cancel');
    assert.equal((await api<{ status: string }>(s.url, 'GET', '/api/v1/thread/org7%2Fvisitor%2Fv7', { token: admin })).body.data.status, 'OPEN');
    await detail.getByRole('button', { name: 'Close thread' }).click();
    await answerDialog(page, 'Close the thread org7/visitor/v7?', 'Close thread');
    await detail.getByRole('heading', { name: 'Thread org7/visitor/v7 (closed)' }).waitFor();
    assert.equal((await api<{ status: string }>(s.url, 'GET', '/api/v1/thread/org7%2Fvisitor%2Fv7', { token: admin })).body.data.status, 'CLOSED');
  });

  it('names STOMP-WS devices sensibly, and "Revoke tokens" ends a STOMP-TCP session that logged in with a password', async () => {
    await addUser('tcp-user');
    const stomp = await connectLegacyTcp(s.server.address('stomp').port, { login: 'tcp-user', passcode: 'tcp-user-password' });
    const token = await login(s.url, 'tcp-user', 'tcp-user-password');
    const bare = new WebSocket(wsUrl(s.url, `/stomp?__token=${token}`), ['v12.stomp']);
    await new Promise((r) => bare.once('open', r));
    bare.send('CONNECT\naccept-version:1.2\nhost:x\n\n\0');
    const { page } = await browser.page(PHONE);
    await consoleLogin(page, s.url);
    // The console's own live-debug STOMP-WS session is a browser: named by it.
    await openSection(page, 'Live debug');
    await page.locator('#debug-state', { hasText: /^Connected/ }).waitFor();
    const other = await browser.page(DESKTOP);
    await consoleLogin(other.page, s.url);
    await openSection(other.page, 'Clients');
    const devices = other.page.locator('#clients td[data-label="Device"]');
    await other.page.locator('#clients tr', { hasText: 'stomp-ws' }).nth(1).waitFor();
    const names = await devices.allInnerTexts();
    assert.ok(names.includes('unnamed (no ?device= or User-Agent)'), names.join(' | '));
    assert.ok(names.some((n) => /^Headless Chrome \d+ on Linux$/.test(n)), names.join(' | '));
    assert.equal(names.includes('unknown'), false);
    const row = other.page.locator('#clients tr', { hasText: 'stomp-tcp' }).filter({ hasText: 'tcp-user' });
    await row.getByRole('button', { name: 'Revoke tokens' }).click();
    await answerDialog(other.page, 'Revoke every token of tcp-user?', 'Revoke');
    await other.page.locator('#banner', { hasText: 'Revoked every token of tcp-user; their sessions ended.' }).waitFor();
    for (let i = 0; i < 200 && stomp.errors.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    const error = stomp.errors[0];
    assert.ok(error, 'the password session got an ERROR frame');
    assert.match(typeof error === 'string' ? error : (error.headers['message'] ?? ''), /revoked the logins of "tcp-user"/);
    // It is gone from the list too (the WebSocket session of the revoked token as well).
    await other.page.locator('#clients tr', { hasText: 'tcp-user' }).first().waitFor({ state: 'detached' });
    await shot(other.page, 'console-clients-after-revoke');
    bare.close();
  });
});
