/**
 * Herald console: a small single-page app over Herald's own HTTP API and,
 * for live debugging, its STOMP WebSocket. No framework: one `render`
 * function per section (pages/), each building its DOM from the API's answers.
 * The admin's token lives in sessionStorage; a 401 sends you back to the
 * login form with the reason.
 *
 * The sections are listed once, in SECTIONS, by group: the menu is built
 * from that list, so a new page is one file in pages/ and one line here.
 */
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { TOKEN_KEY, whenSessionEnds } from './api.js';
import { clearBanner, h, nav } from './dom.js';
import { stopLive } from './live.js';
import { renderApps } from './pages/apps.js';
import { renderAudit } from './pages/audit.js';
import { renderClient } from './pages/client.js';
import { renderClients } from './pages/clients.js';
import { renderDebug } from './pages/debug.js';
import { renderLogin } from './pages/login.js';
import { renderMessages } from './pages/messages.js';
import { renderNodes } from './pages/nodes.js';
import { renderOverview } from './pages/overview.js';
import { renderQueues } from './pages/queues.js';
import { renderRetained } from './pages/retained.js';
import { renderRules } from './pages/rules.js';
import { renderSubscriptions } from './pages/subscriptions.js';
import { renderThreads } from './pages/threads.js';
import { renderUsers } from './pages/users.js';
import { renderWebhooks } from './pages/webhooks.js';

interface Section {
  id: string;
  label: string;
  group: 'Monitor' | 'Messaging' | 'Access';
  /** `arg`: what follows the section in the address (`#clients/{sessionId}`), if anything. */
  render: (arg?: string) => void;
}

const SECTIONS: Section[] = [
  { id: 'overview', label: 'Overview', group: 'Monitor', render: renderOverview },
  { id: 'nodes', label: 'Node health', group: 'Monitor', render: renderNodes },
  { id: 'clients', label: 'Clients', group: 'Monitor', render: (id) => (id ? renderClient(id) : renderClients()) },
  { id: 'subscriptions', label: 'Subscriptions', group: 'Monitor', render: renderSubscriptions },
  { id: 'messages', label: 'Messages', group: 'Messaging', render: renderMessages },
  { id: 'threads', label: 'Threads', group: 'Messaging', render: renderThreads },
  { id: 'retained', label: 'Retained', group: 'Messaging', render: renderRetained },
  { id: 'queues', label: 'Queues', group: 'Messaging', render: renderQueues },
  { id: 'debug', label: 'Live debug', group: 'Messaging', render: renderDebug },
  { id: 'users', label: 'Users', group: 'Access', render: renderUsers },
  { id: 'apps', label: 'MQTT apps', group: 'Access', render: renderApps },
  { id: 'rules', label: 'Rules', group: 'Access', render: renderRules },
  { id: 'webhooks', label: 'Webhooks', group: 'Access', render: renderWebhooks },
  { id: 'audit', label: 'Audit log', group: 'Access', render: renderAudit },
];

const menu = document.getElementById('menu')!;

function buildNav(): void {
  const groups = [...new Set(SECTIONS.map((s) => s.group))];
  nav.replaceChildren(
    ...groups.map((g) =>
      h('div', { class: 'nav-group', role: 'group', 'aria-label': g }, h('span', { class: 'nav-group-name' }, g), ...SECTIONS.filter((s) => s.group === g).map((s) => h('a', { href: '#' + s.id }, s.label))),
    ),
    h('button', { id: 'logout', type: 'button', class: 'link', onclick: logOut }, 'Log out'),
  );
}

/** Logged in: the menu shows (on a phone behind the Menu button); logged out: none of it does. */
function showMenu(on: boolean): void {
  nav.hidden = !on;
  menu.hidden = !on;
  document.body.classList.toggle('menu-open', false);
  menu.setAttribute('aria-expanded', 'false');
}

function route(): void {
  stopLive();
  clearBanner();
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    showMenu(false);
    return renderLogin(route);
  }
  showMenu(true);
  const [name = '', ...rest] = location.hash.slice(1).split('/');
  const section = SECTIONS.find((s) => s.id === (name || 'overview')) ?? SECTIONS[0]!;
  for (const a of nav.querySelectorAll('a')) a.toggleAttribute('aria-current', a.getAttribute('href') === '#' + section.id);
  document.title = `${section.label} · Herald console`;
  let arg: string | undefined;
  try {
    arg = rest.length > 0 ? decodeURIComponent(rest.join('/')) : undefined;
  } catch {
    arg = undefined;
  }
  section.render(arg);
}

function logOut(): void {
  void fetch('/v1/logout', { method: 'POST', headers: { 'x-auth-token': sessionStorage.getItem(TOKEN_KEY) ?? '' } }).catch(() => undefined);
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  showMenu(false);
  renderLogin(route, 'You are logged out.');
}

menu.addEventListener('click', () => {
  const open = !document.body.classList.contains('menu-open');
  document.body.classList.toggle('menu-open', open);
  menu.setAttribute('aria-expanded', String(open));
});
// Choosing a section on a phone closes the menu again.
nav.addEventListener('click', (e) => {
  if ((e.target as HTMLElement).closest('a')) (document.body.classList.remove('menu-open'), menu.setAttribute('aria-expanded', 'false'));
});
whenSessionEnds((message) => (showMenu(false), renderLogin(route, message)));
window.addEventListener('hashchange', route);
buildNav();
route();
