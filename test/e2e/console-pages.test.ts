/**
 * Every console page in Chromium at a desktop and a phone width: it loads
 * with no page error and no console error, and leaves a screenshot. Also
 * the login form without the menu, and the icon every browser asks for.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { answerDialog, browserMissing, consoleLogin, DESKTOP, openSection, PHONE, shot, TestBrowser, type WatchedPage } from '../helpers/browser.js';
import mqtt from 'mqtt';
import { ADMIN_PASSWORD, api, login, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';

/** Each section: its menu link, its heading, and what shows once its data has loaded. */
const SECTIONS: { link: string; heading: string; loaded: (p: Page) => Promise<unknown> }[] = [
  { link: 'Overview', heading: 'Overview', loaded: (p) => p.locator('#chart-connections .legend').waitFor() },
  { link: 'Node health', heading: 'Node health', loaded: (p) => p.locator('#nodes .node td', { hasText: 'stomp' }).first().waitFor() },
  { link: 'Clients', heading: 'Clients', loaded: (p) => p.locator('#clients tr', { hasText: 'pages-watcher' }).first().waitFor() },
  { link: 'Subscriptions', heading: 'Subscriptions', loaded: (p) => p.locator('#subscriptions tr', { hasText: 'pages/news' }).waitFor() },
  { link: 'Messages', heading: 'Messages', loaded: (p) => p.locator('#messages .pager').waitFor() },
  { link: 'Threads', heading: 'Threads', loaded: (p) => p.locator('#threads tr', { hasText: 'org9/visitor/v9' }).waitFor() },
  { link: 'Retained', heading: 'Retained messages', loaded: (p) => p.locator('#retained tr', { hasText: 'pages/state' }).waitFor() },
  { link: 'Queues', heading: 'Queues and mailboxes', loaded: (p) => p.locator('#queues tr', { hasText: '/queue/pages-jobs' }).waitFor() },
  { link: 'Live debug', heading: 'Live debug', loaded: (p) => p.locator('#debug-state', { hasText: /^Connected/ }).waitFor() },
  { link: 'Users', heading: 'Users', loaded: (p) => p.locator('#users tr', { hasText: 'pages-watcher' }).waitFor() },
  { link: 'MQTT apps', heading: 'MQTT apps', loaded: (p) => p.locator('#apps tr', { hasText: 'pages-app' }).waitFor() },
  { link: 'Rules', heading: 'Rules', loaded: (p) => p.locator('#rules-summary', { hasText: /aclFile/ }).waitFor() },
  { link: 'Webhooks', heading: 'Webhooks', loaded: (p) => p.locator('#webhook-dead', { hasText: 'The dead list is empty.' }).waitFor() },
  { link: 'Audit log', heading: 'Audit log', loaded: (p) => p.locator('#audit tr', { hasText: 'user.create' }).first().waitFor() },
];

describe('console pages in Chromium', { skip: browserMissing() }, () => {
  let s: TestServer;
  let browser: TestBrowser;
  let stomp: RawStomp;

  before(async () => {
    s = await startServer({ historySampleSeconds: 1 });
    const admin = await login(s.url);
    browser = await TestBrowser.launch();
    // Something on every page: a user online, messages, a thread, an app, audit entries.
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'pages-watcher', password: 'pages-watcher-pw', role: 'user' } });
    stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: 'pages-watcher', passcode: 'pages-watcher-pw' });
    await api(s.url, 'POST', '/api/message/sendMessage', { token: admin, body: { receiver: ['pages-watcher'], title: 'welcome', content: 'hello' } });
    await api(s.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'org9/visitor/v9', members: [{ user: 'pages-watcher', role: 'visitor' }] } });
    await api(s.url, 'POST', '/api/apps', { token: admin, body: { name: 'pages-app' } });
    stomp.send('SUBSCRIBE\nid:1\ndestination:/topic/pages.news\nreceipt:r1\n\n\0');
    await stomp.next('RECEIPT');
    await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/queue/pages-jobs', body: 'job' } });
    const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${s.server.address('mqtt').port}`, { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 });
    await m.publishAsync('pages/state', 'on', { qos: 1, retain: true });
    await m.endAsync();
  });
  after(async () => {
    stomp?.close();
    await browser?.close();
    await s?.stop();
  });

  for (const [width, viewport] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const) {
    it(`loads every page at ${viewport.width} px with no page error and no console error`, async () => {
      const w: WatchedPage = await browser.page(viewport);
      const { page } = w;
      await page.goto(`${s.url}/console/`);
      await page.getByRole('heading', { name: 'Log in to Herald' }).waitFor();
      // Before login there is no menu and no "Log out" (nav{display:flex} used to override `hidden`).
      assert.equal(await page.locator('#nav').isVisible(), false, 'no menu on the login form');
      assert.equal(await page.getByRole('button', { name: 'Log out' }).isVisible(), false);
      assert.equal(await page.getByRole('button', { name: 'Menu' }).isVisible(), false);
      await shot(page, `console-login-${width}`);
      await consoleLogin(page, s.url);
      for (const section of SECTIONS) {
        await openSection(page, section.link);
        await page.getByRole('heading', { name: section.heading, level: 1 }).waitFor();
        await section.loaded(page);
        await shot(page, `console-${section.link.toLowerCase().replace(/ /g, '-')}-${width}`);
      }
      // A reload of a page deep in the console comes back to it, logged in.
      await page.reload();
      await page.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor();
      assert.deepEqual(w.pageErrors, []);
      assert.deepEqual(w.consoleErrors, [], 'no console errors (a missing /favicon.ico was one)');
    });
  }

  it('folds the menu behind a button on a phone, and shows it in full on a desktop', async () => {
    const phone = await browser.page(PHONE);
    await consoleLogin(phone.page, s.url);
    const link = phone.page.getByRole('link', { name: 'Audit log', exact: true });
    assert.equal(await link.isVisible(), false, 'folded');
    const menu = phone.page.getByRole('button', { name: 'Menu' });
    assert.equal(await menu.getAttribute('aria-expanded'), 'false');
    await menu.click();
    assert.equal(await menu.getAttribute('aria-expanded'), 'true');
    await shot(phone.page, 'console-menu-phone');
    await link.click();
    await phone.page.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor();
    assert.equal(await link.isVisible(), false, 'folded again after choosing');
    const desk = await browser.page(DESKTOP);
    await consoleLogin(desk.page, s.url);
    assert.equal(await desk.page.getByRole('button', { name: 'Menu' }).isVisible(), false);
    assert.equal(await desk.page.getByRole('link', { name: 'Audit log', exact: true }).isVisible(), true);
    // Log out: the menu goes with the session.
    await desk.page.getByRole('button', { name: 'Log out' }).click();
    await desk.page.getByRole('heading', { name: 'Log in to Herald' }).waitFor();
    assert.equal(await desk.page.locator('#nav').isVisible(), false);
  });

  it('serves the icon the browser asks for on the console and the demo pages', async () => {
    const w = await browser.page(DESKTOP);
    const icon = await w.page.request.get(`${s.url}/favicon.ico`);
    assert.equal(icon.status(), 200);
    assert.equal(icon.headers()['content-type'], 'image/x-icon');
    await w.page.goto(`${s.url}/demo/`);
    await w.page.getByRole('heading', { name: 'Herald demo pages' }).waitFor();
    assert.deepEqual(w.consoleErrors, []);
    // The console names its icon itself, under its own CSP.
    await w.page.goto(`${s.url}/console/`);
    assert.match((await w.page.locator('link[rel="icon"]').getAttribute('href')) ?? '', /favicon\.ico$/);
  });

  it('asks before a change and does nothing when the question is dismissed', async () => {
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    await openSection(page, 'Users');
    const row = page.locator('#users tr', { hasText: 'pages-watcher' });
    await row.getByRole('button', { name: 'Delete' }).click();
    await answerDialog(page, 'Delete pages-watcher?', 'Cancel');
    await row.getByRole('button', { name: 'Disable' }).click();
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'detached' });
    const users = await api<{ name: string; disabled: boolean }[]>(s.url, 'GET', '/api/users', { token: await login(s.url) });
    assert.deepEqual(users.body.data.find((u) => u.name === 'pages-watcher'), { ...users.body.data.find((u) => u.name === 'pages-watcher'), disabled: false });
    assert.equal(await row.locator('td[data-label="State"]').innerText(), 'active');
  });
});
