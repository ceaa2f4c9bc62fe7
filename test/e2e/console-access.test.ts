/**
 * Users, MQTT apps, rules and the audit log in the console, in Chromium:
 * the last admin cannot lock everyone out (refused in words), users are
 * found and paged, get a new password or are deleted after a question;
 * apps get a new secret or are deleted; Reload says in words when the
 * server cannot; and the audit log shows all of it at once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { answerDialog, browserMissing, consoleLogin, DESKTOP, openSection, PHONE, shot, TestBrowser } from '../helpers/browser.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';

describe('users, apps, rules and the audit log in Chromium', { skip: browserMissing() }, () => {
  let s: TestServer;
  let browser: TestBrowser;
  let admin: string;
  const users = async () => (await api<{ id: string; name: string; role: string; disabled: boolean }[]>(s.url, 'GET', '/api/users', { token: admin })).body.data;

  before(async () => {
    s = await startServer();
    admin = await login(s.url);
    browser = await TestBrowser.launch();
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
  });

  it('refuses, in words, to disable, demote or delete the last admin from the console', async () => {
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    await openSection(page, 'Users');
    const me = page.locator('#users tr', { hasText: 'admin (you)' });
    await me.getByRole('button', { name: 'Disable' }).click();
    // The question says what follows for oneself.
    await page.getByRole('dialog').getByText('That is you: your console session ends too.', { exact: false }).waitFor();
    await answerDialog(page, 'Disable admin?', 'Disable');
    const banner = page.locator('#banner.error');
    await banner.waitFor();
    assert.equal(await banner.innerText(), '"admin" is the last active admin: disabling it would leave nobody able to manage users; make another user admin first');
    await page.getByLabel('Role of admin').selectOption('user');
    await answerDialog(page, 'Make admin user?', 'Make user');
    await page.locator('#banner.error', { hasText: 'demoting it would leave nobody able to manage users' }).waitFor();
    await me.getByRole('button', { name: 'Delete' }).click();
    await answerDialog(page, 'Delete admin?', 'Delete');
    await page.locator('#banner.error', { hasText: 'deleting it would leave nobody able to manage users' }).waitFor();
    await shot(page, 'console-last-admin-refused');
    const still = (await users()).find((u) => u.name === 'admin')!;
    assert.deepEqual([still.role, still.disabled], ['admin', false]);
    // And the console is still usable: the session was not ended.
    await openSection(page, 'Overview');
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  });

  it('finds users by name a page at a time, resets a password and deletes a user after asking', async () => {
    for (let i = 1; i <= 24; i++) {
      const r = await api(s.url, 'POST', '/api/users', { token: admin, body: { name: `crew-${String(i).padStart(2, '0')}`, password: 'crew-password', role: 'user' } });
      assert.equal(r.status, 200, r.body.message);
    }
    const { page } = await browser.page(PHONE);
    await consoleLogin(page, s.url);
    await openSection(page, 'Users');
    await page.locator('#users .pager', { hasText: 'Page 1 of 2 (25 users)' }).waitFor();
    await page.getByRole('button', { name: 'Next ›' }).click();
    await page.locator('#users .pager', { hasText: 'Page 2 of 2' }).waitFor();
    assert.deepEqual(await page.locator('#users td[data-label="Name"]').allInnerTexts(), ['crew-20', 'crew-21', 'crew-22', 'crew-23', 'crew-24']);
    await page.getByLabel('Find by name').fill('CREW-1');
    await page.getByRole('button', { name: 'Find', exact: true }).click();
    await page.locator('#users .pager', { hasText: /^10 users$/ }).waitFor();
    assert.deepEqual((await page.locator('#users td[data-label="Name"]').allInnerTexts()).slice(0, 2), ['crew-10', 'crew-11']);
    // A new password, asked for in the dialog.
    const row = page.locator('#users tr', { hasText: 'crew-12' });
    await row.getByRole('button', { name: 'Reset password' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel(/New password/).fill('crew-12-new-password');
    await shot(page, 'console-reset-password-phone');
    await dialog.getByRole('button', { name: 'Set password' }).click();
    await page.locator('#banner', { hasText: 'crew-12 has a new password' }).waitFor();
    assert.equal((await api(s.url, 'POST', '/v1/login', { body: { username: 'crew-12', password: 'crew-password' } })).status, 401);
    assert.equal((await api(s.url, 'POST', '/v1/login', { body: { username: 'crew-12', password: 'crew-12-new-password' } })).status, 200);
    // Delete, after the question.
    await page.locator('#users tr', { hasText: 'crew-13' }).getByRole('button', { name: 'Delete' }).click();
    await answerDialog(page, 'Delete crew-13?', 'Delete');
    await page.locator('#banner', { hasText: 'Deleted user crew-13.' }).waitFor();
    assert.equal((await users()).some((u) => u.name === 'crew-13'), false);
    assert.equal(await page.locator('#users tr', { hasText: 'crew-13' }).count(), 0);
    // Disable, after the question.
    await page.locator('#users tr', { hasText: 'crew-14' }).getByRole('button', { name: 'Disable' }).click();
    await answerDialog(page, 'Disable crew-14?', 'Disable');
    await page.locator('#users tr', { hasText: 'crew-14' }).locator('td[data-label="State"]', { hasText: 'disabled' }).waitFor();
  });

  it('gives an app a new secret and deletes an app, asking first', async () => {
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    await openSection(page, 'MQTT apps');
    await page.getByRole('form', { name: 'Create an MQTT app' }).getByLabel('Name').fill('racing');
    await page.getByRole('button', { name: 'Create app' }).click();
    const first = await page.locator('#app-secret dd code').nth(1).innerText();
    assert.match(first, /^YXA6/);
    await page.getByRole('button', { name: 'I have copied it' }).click();
    const row = page.locator('#apps tr', { hasText: 'racing' });
    await row.getByRole('button', { name: 'New secret' }).click();
    await answerDialog(page, 'Give racing a new secret?', 'New secret');
    await page.locator('#app-secret', { hasText: 'New secret for app: racing' }).waitFor();
    const second = await page.locator('#app-secret dd code').nth(1).innerText();
    assert.notEqual(second, first);
    const clientId = await page.locator('#app-secret dd code').nth(0).innerText();
    assert.equal((await api(s.url, 'POST', '/openapi/rm/app/token', { body: { appClientId: clientId, appClientSecret: first } })).status, 401);
    assert.equal((await api(s.url, 'POST', '/openapi/rm/app/token', { body: { appClientId: clientId, appClientSecret: second } })).status, 200);
    await shot(page, 'console-apps-new-secret');
    await row.getByRole('button', { name: 'Delete' }).click();
    await answerDialog(page, 'Delete the app racing?', 'Delete');
    await page.locator('#banner', { hasText: 'Deleted the app racing; 0 session(s) ended.' }).waitFor();
    await page.locator('#apps', { hasText: 'No MQTT apps yet.' }).waitFor();
  });

  it('shows the rules in force and reloads them', async () => {
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    await openSection(page, 'Rules');
    await page.locator('#rules-summary', { hasText: 'No aclFile is set: every authenticated client may publish and subscribe to any topic' }).waitFor();
    await page.getByRole('button', { name: 'Reload', exact: true }).click();
    await answerDialog(page, 'Reload the access rules and TLS files?', 'Reload');
    const banner = page.locator('#banner');
    await banner.waitFor();
    assert.equal(await banner.innerText(), 'Reloaded.');
    await page.locator('#reload-result', { hasText: '"ok":true' }).waitFor();
  });

  it('shows the actions just taken in the audit log, newest first, with who and from where', async () => {
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    await openSection(page, 'Audit log');
    const rows = page.locator('#audit tbody tr');
    await rows.first().waitFor();
    const actions = await page.locator('#audit td[data-label="Action"]').allInnerTexts();
    const wanted = ['acl.reload', 'app.delete', 'app.rotate', 'app.create', 'user.update', 'user.delete', 'user.update'];
    // The reload of the test before, its app actions, then disable crew-14, delete crew-13, reset crew-12's password.
    assert.deepEqual(actions.slice(0, 7), wanted, actions.join(', '));
    const reset = page.locator('#audit tr', { hasText: 'crew-12' }).first();
    assert.match(await reset.locator('td[data-label="Details"]').innerText(), /^password: reset$/);
    assert.equal(await reset.locator('td[data-label="Who"]').innerText(), 'admin');
    assert.match(await reset.locator('td[data-label="From"]').innerText(), /127\.0\.0\.1/);
    // The refused last-admin changes left no entry: nothing was done.
    assert.equal(await page.locator('#audit tr', { hasText: 'user "admin"' }).count(), 0);
    // Filter by area.
    await page.getByLabel('Action').selectOption('app');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator('#audit .pager', { hasText: /^3 entries$/ }).waitFor();
    await shot(page, 'console-audit-filtered');
  });
});
