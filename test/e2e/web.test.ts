/**
 * The console and the demo pages in a real browser: Playwright (playwright-core)
 * driving Debian's Chromium against a real server. Every test saves a
 * screenshot under test-output/screenshots/.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it, before, after } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { api, login, startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';
import { answerDialog } from '../helpers/browser.js';

const CHROMIUM = process.env['HERALD_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
const SHOTS = fileURLToPath(new URL('../../test-output/screenshots/', import.meta.url));
const BUILT = fileURLToPath(new URL('../../dist/web/console/index.html', import.meta.url));

function browserMissing(): string | false {
  const missing = !existsSync(CHROMIUM) ? `Chromium at ${CHROMIUM} (apt-get install -y chromium)` : !existsSync(BUILT) ? 'the built console (npm run build)' : undefined;
  if (!missing) return false;
  if (process.env['CI']) throw new Error(`CI=true but the browser tests need ${missing}`);
  return `needs ${missing}`;
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
}

describe('console and demo pages in Chromium', { skip: browserMissing() }, () => {
  let s: TestServer;
  let browser: Browser;
  let admin: string;
  const contexts: BrowserContext[] = [];
  /** What Chromium refused under the console's Content-Security-Policy, over all the tests above the last. */
  const cspViolations: string[] = [];

  async function newPage(viewport = { width: 1280, height: 900 }): Promise<Page> {
    const ctx = await browser.newContext({ viewport });
    contexts.push(ctx);
    const page = await ctx.newPage();
    page.setDefaultTimeout(10_000);
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspViolations.push(`${page.url()}: ${m.text()}`);
    });
    return page;
  }

  async function consoleLogin(page: Page, password = ADMIN_PASSWORD): Promise<void> {
    await page.goto(`${s.url}/console/`);
    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Log in' }).click();
  }

  async function addUser(name: string, role = 'user'): Promise<string> {
    const r = await api<{ id: string }>(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password', role } });
    assert.equal(r.status, 200, r.body.message);
    return r.body.data.id;
  }

  before(async () => {
    s = await startServer();
    admin = await login(s.url);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
  });
  after(async () => {
    for (const c of contexts) await c.close();
    await browser?.close();
    await s.stop();
  });

  it('refuses a wrong password with the reason in words', async () => {
    const page = await newPage();
    await consoleLogin(page, 'not-the-password');
    const error = page.locator('#login-error');
    await error.waitFor();
    assert.match(await error.innerText(), /wrong user name or password/);
    await shot(page, 'console-wrong-password');
  });

  it('logs in, shows the overview, and sends an expired session back to the login form', async () => {
    const page = await newPage();
    await consoleLogin(page);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.locator('dd', { hasText: 'sqlite' }).waitFor();
    // Some traffic for the charts: a subscriber, topic publishes, stored messages.
    const sub = await RawStomp.tcp(s.server.address('stomp').port);
    await sub.connect({ login: 'admin', passcode: ADMIN_PASSWORD });
    sub.send('SUBSCRIBE\nid:1\ndestination:/topic/overview\n\n\0');
    for (let i = 0; i < 8; i++) {
      for (let j = 0; j < 20; j++) await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/overview', body: `tick ${i}.${j}` } });
      await api(s.url, 'POST', '/api/message/sendMessage', { token: admin, body: { receiver: ['admin'], title: 'tick', content: String(i), type: 'NOTICE' } });
      await page.waitForTimeout(500);
    }
    await page.locator('dd', { hasText: /^1 \(stomp-tcp 1\)$/ }).waitFor(); // the subscriber's connection
    await shot(page, 'console-overview');
    sub.close();
    assert.ok(await page.evaluate(() => sessionStorage.getItem('herald.token')), 'the token lives in sessionStorage');
    // Revoke the console's own token: the next call answers 401 and the login form comes back with a message.
    const token = await page.evaluate(() => sessionStorage.getItem('herald.token')!);
    await api(s.url, 'POST', '/v1/logout', { token });
    await page.locator('#login-error').waitFor();
    assert.match(await page.locator('#login-error').innerText(), /session has ended/);
  });

  it('lists a client connected by the test in Clients, and disconnects it', async () => {
    await addUser('watcher');
    const stomp = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await stomp.connect({ login: 'watcher', passcode: 'watcher-password' })).command, 'CONNECTED');
    stomp.send('SUBSCRIBE\nid:a\ndestination:/topic/x\n\n\0SUBSCRIBE\nid:b\ndestination:/queue/watch\nack:client\nreceipt:r\n\n\0');
    await stomp.next('RECEIPT');
    await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/queue/watch', body: 'unacked' } });
    await stomp.next('MESSAGE');
    const page = await newPage();
    await consoleLogin(page);
    await page.getByRole('link', { name: 'Clients' }).click();
    const row = page.locator('tr', { hasText: 'watcher' });
    await row.waitFor();
    assert.match(await row.innerText(), /stomp-tcp/);
    assert.equal(await row.locator('td[data-label="Subscriptions"]').innerText(), '2');
    assert.equal(await row.locator('td[data-label="Unacked"]').innerText(), '1');
    await shot(page, 'console-clients');
    await row.getByRole('button', { name: 'Disconnect', exact: true }).click();
    await answerDialog(page, "Disconnect watcher's stomp-tcp session?", 'Disconnect');
    const err = await stomp.next('ERROR');
    assert.match(err.headers.find(([k]) => k === 'message')?.[1] ?? '', /disconnected by admin/);
    await stomp.closedPromise;
  });

  it('delivers a message sent from the console form to the notifications demo page, and a pushed stream notification', async () => {
    await addUser('viewer');
    const demo = await newPage({ width: 390, height: 844 }); // a phone
    await demo.goto(`${s.url}/demo/notifications.html`);
    await demo.getByLabel('User name').fill('viewer');
    await demo.getByLabel('Password').fill('viewer-password');
    await demo.getByRole('button', { name: 'Log in and connect' }).click();
    await demo.locator('#state', { hasText: /^connected$/ }).waitFor();

    const page = await newPage();
    await consoleLogin(page);
    await page.getByRole('link', { name: 'Messages' }).click();
    const form = page.getByRole('form', { name: 'Send a message' });
    await form.getByLabel(/Receivers/).fill('viewer');
    await form.getByLabel('Title').fill('Maintenance');
    await form.getByLabel('Content').fill('The service restarts at 02:00');
    await form.getByRole('button', { name: 'Send' }).click();
    await page.locator('#banner', { hasText: /sent to 1 receiver/ }).waitFor();
    await demo.locator('#log li', { hasText: 'message "Maintenance": The service restarts at 02:00' }).waitFor();
    await demo.getByRole('button', { name: /push a stream notification/ }).click();
    await demo.locator('#log li', { hasText: 'stream notification: opened' }).waitFor();
    await shot(demo, 'demo-notifications-phone');
    await shot(page, 'console-messages');
    // The message record shows the receiver's status moving on.
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('tr', { hasText: 'Maintenance' }).locator('.status-delivered, .status-read').waitFor();
  });

  it('lets a visitor and an agent chat through the chat demo, each seeing the other read their messages', async () => {
    await addUser('visitor1');
    await addUser('agent1');
    const created = await api(s.url, 'POST', '/api/v1/thread', {
      token: admin,
      body: { thread: 'org1/visitor/v1', members: [{ user: 'visitor1', role: 'visitor' }, { user: 'agent1', role: 'agent' }] },
    });
    assert.equal(created.status, 200, created.body.message);
    const visitor = await newPage({ width: 390, height: 844 });
    const agent = await newPage();
    for (const [page, who, role] of [[visitor, 'visitor1', 'visitor'], [agent, 'agent1', 'agent']] as const) {
      await page.goto(`${s.url}/demo/chat.html?role=${role}`);
      await page.getByLabel('User name').fill(who);
      await page.getByLabel('Password').fill(who + '-password');
      await page.getByRole('button', { name: 'Join the chat' }).click();
      await page.locator('#state', { hasText: /^connected$/ }).waitFor();
    }
    await visitor.getByLabel('Message', { exact: true }).fill('Hello, where is my order?');
    await visitor.getByRole('button', { name: 'Send', exact: true }).click();
    await agent.locator('.bubble', { hasText: 'Hello, where is my order?' }).waitFor();
    // The agent's page sends READ on arrival: the visitor sees it.
    await visitor.locator('.bubble.mine', { hasText: 'Hello, where is my order?' }).locator('.status', { hasText: 'read by agent1' }).waitFor();
    await agent.getByLabel('Message', { exact: true }).fill('It ships today.');
    await agent.getByRole('button', { name: 'Send', exact: true }).click();
    await visitor.locator('.bubble', { hasText: 'It ships today.' }).waitFor();
    await agent.locator('.bubble.mine', { hasText: 'It ships today.' }).locator('.status', { hasText: 'read by visitor1' }).waitFor();
    // Typing shows on the other side.
    await visitor.getByLabel('Message', { exact: true }).pressSequentially('thanks');
    await agent.locator('#typing', { hasText: 'visitor1 is typing' }).waitFor().catch(async (err: Error) => {
      throw new Error(`${err.message}\nvisitor error: ${await visitor.locator('#error').innerText()}; agent error: ${await agent.locator('#error').innerText()}`);
    });
    // Recall: the agent takes back its message, the visitor sees it struck out.
    await agent.locator('.bubble.mine', { hasText: 'It ships today.' }).getByRole('button', { name: 'Recall this message' }).click();
    await visitor.locator('.bubble.recalled', { hasText: 'It ships today.' }).waitFor();
    // Recalled, it cannot be recalled again: its button goes.
    await agent.locator('.bubble.mine.recalled', { hasText: 'It ships today.' }).waitFor();
    assert.equal(await agent.locator('.bubble.mine', { hasText: 'It ships today.' }).getByRole('button', { name: 'Recall this message' }).count(), 0);
    // Rating (visitor tool), and the HTTP fallback with the socket down.
    await visitor.getByRole('button', { name: 'Rate' }).click();
    await agent.locator('.bubble', { hasText: 'rated the service 5/5' }).waitFor();
    await visitor.getByRole('textbox', { name: 'Leave a message' }).fill('Call me tomorrow');
    await visitor.getByLabel('Contact').fill('555-0100');
    await visitor.getByRole('button', { name: 'Leave message' }).click();
    await agent.locator('.bubble', { hasText: 'left a message: Call me tomorrow (contact: 555-0100)' }).waitFor();
    await visitor.getByRole('button', { name: /Drop the socket/ }).click();
    await visitor.getByLabel('Message', { exact: true }).fill('Sent while offline');
    await visitor.getByRole('button', { name: 'Send', exact: true }).click();
    await visitor.locator('.bubble.mine', { hasText: 'Sent while offline' }).locator('.status', { hasText: 'sent over HTTP' }).waitFor();
    await agent.locator('.bubble', { hasText: 'Sent while offline' }).waitFor();
    await shot(visitor, 'demo-chat-visitor-phone');
    await shot(agent, 'demo-chat-agent');
  });

  it('runs the /test echo from the live-debug page and shows the frames', async () => {
    const page = await newPage();
    await consoleLogin(page);
    await page.getByRole('link', { name: 'Live debug' }).click();
    await page.locator('#debug-state', { hasText: /^Connected/ }).waitFor();
    await page.getByLabel(/Echo text/).fill('ping from the browser');
    await page.getByRole('button', { name: 'Run /test echo' }).click();
    await page.locator('#frames li.frame-ECHO', { hasText: 'ping from the browser' }).waitFor();
    // Subscribing and publishing on a topic shows the MESSAGE frame too.
    await page.getByRole('button', { name: 'Subscribe' }).click();
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.locator('#frames li.frame-MESSAGE', { hasText: 'hello from the console' }).waitFor();
    await shot(page, 'console-live-debug');
  });

  it('exchanges inputs between two MQTT demo tabs with app and user tokens (device MQTT)', async () => {
    const app = await api<{ appId: string; appClientId: string; appClientSecret: string }>(s.url, 'POST', '/api/apps', { token: admin, body: { name: 'game' } });
    assert.equal(app.status, 200, app.body.message);
    const tabs: Page[] = [];
    for (const who of ['alice', 'bob']) {
      const page = await newPage({ width: 390, height: 844 });
      await page.goto(`${s.url}/demo/mqtt.html`);
      await page.getByLabel('appId', { exact: true }).fill(app.body.data.appId);
      await page.getByLabel('appClientId').fill(app.body.data.appClientId);
      await page.getByLabel('appClientSecret').fill(app.body.data.appClientSecret);
      await page.getByLabel('User name').fill(who);
      await page.getByRole('button', { name: 'Get tokens and connect' }).click();
      await page.locator('#state', { hasText: /^connected as/ }).waitFor().catch(async (err: Error) => {
        throw new Error(`${err.message}\nstate: ${await page.locator('#state').innerText()}; error: ${await page.locator('#error').innerText()}`);
      });
      tabs.push(page);
    }
    await tabs[0]!.getByLabel('Input to send').fill('move e2e4');
    await tabs[0]!.getByRole('button', { name: 'Send' }).click();
    await tabs[1]!.locator('#log li', { hasText: 'alice: move e2e4' }).waitFor();
    await shot(tabs[1]!, 'demo-mqtt-phone');
  });

  it('shows the users and apps section and creates a user', async () => {
    const page = await newPage();
    await consoleLogin(page);
    await page.getByRole('link', { name: 'Users', exact: true }).click();
    const form = page.getByRole('form', { name: 'Create a user' });
    await form.getByLabel('Name').fill('newcomer');
    await form.getByLabel('Password').fill('newcomer-password');
    await form.getByRole('button', { name: 'Create user' }).click();
    await page.locator('#users tr', { hasText: 'newcomer' }).waitFor();
    // A role change asks first: dismissed, nothing changes and the list shows the old role again.
    await page.getByLabel('Role of newcomer').selectOption('admin');
    await answerDialog(page, 'Make newcomer admin?', 'Cancel');
    assert.equal(await page.getByLabel('Role of newcomer').inputValue(), 'user');
    let users = await api<{ name: string; role: string }[]>(s.url, 'GET', '/api/users', { token: admin });
    assert.equal(users.body.data.find((u) => u.name === 'newcomer')?.role, 'user', 'not applied on change, only on confirm');
    await page.getByLabel('Role of newcomer').selectOption('service');
    await answerDialog(page, 'Make newcomer service?', 'Make service');
    await page.locator('#banner', { hasText: 'newcomer is now service' }).waitFor();
    users = await api<{ name: string; role: string }[]>(s.url, 'GET', '/api/users', { token: admin });
    assert.equal(users.body.data.find((u) => u.name === 'newcomer')?.role, 'service');
    // A duplicate name is refused in words.
    await form.getByLabel('Name').fill('newcomer');
    await form.getByLabel('Password').fill('whatever-password');
    await form.getByRole('button', { name: 'Create user' }).click();
    await page.locator('#banner.error', { hasText: /already exists/ }).waitFor();
    await shot(page, 'console-users');
    // At a phone's width the table turns into labelled cards, and every control stays reachable.
    await page.setViewportSize({ width: 390, height: 844 });
    const cell = page.locator('#users tr', { hasText: 'newcomer' }).locator('td[data-label="Name"]');
    assert.equal(await cell.evaluate((td) => getComputedStyle(td).display), 'block');
    assert.ok(await page.getByLabel('Role of newcomer').isVisible());
    await shot(page, 'console-users-phone');
  });

  it('speaks to the reader of client profiles, never of "seeds", on every demo page', async () => {
    const page = await newPage({ width: 390, height: 844 });
    for (const path of ['', 'notifications.html', 'chat.html?role=visitor', 'chat.html?role=agent', 'mqtt.html']) {
      await page.goto(`${s.url}/demo/${path}`);
      const text = `${await page.title()} ${await page.locator('body').innerText()}`;
      assert.doesNotMatch(text, /\bseeds?\b/i, `/demo/${path}`);
    }
    const index = await page.goto(`${s.url}/demo/`);
    assert.equal(index?.status(), 200);
    assert.match(await page.locator('body').innerText(), /client profiles/);
  });

  it('serves the console under a strict CSP that it keeps to, and lets no page be framed', async () => {
    const page = await (await fetch(`${s.url}/console/`)).headers;
    assert.match(page.get('content-security-policy') ?? '', /script-src 'self';.*frame-ancestors 'none'/);
    assert.equal(page.get('x-frame-options'), 'DENY');
    const demo = (await fetch(`${s.url}/demo/notifications.html`)).headers;
    assert.equal(demo.get('x-frame-options'), 'DENY');
    assert.equal(demo.get('referrer-policy'), 'no-referrer');
    // Every console test above ran under that policy (login, charts, STOMP live debug, forms): nothing was refused.
    assert.deepEqual(cspViolations, []);
    // And the policy bites: an inline script injected into the console does not run.
    const p = await newPage();
    await consoleLogin(p);
    await p.getByRole('heading', { name: 'Overview' }).waitFor();
    const ran = await p.evaluate(() => {
      const el = document.createElement('script');
      el.textContent = 'window.__injected = true';
      document.body.append(el);
      return (window as unknown as { __injected?: boolean }).__injected === true;
    });
    assert.equal(ran, false);
    // ...and the watcher that found nothing above does see a refusal when there is one.
    for (let i = 0; i < 50 && cspViolations.length === 0; i++) await p.waitForTimeout(20);
    assert.match(cspViolations[0] ?? '', /inline script violates the following Content Security Policy directive/);
    cspViolations.length = 0;
  });
});
