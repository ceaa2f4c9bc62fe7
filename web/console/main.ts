/**
 * Herald console: a small single-page app over Herald's own HTTP API and,
 * for live debugging, its STOMP WebSocket. No framework: one `render`
 * function per section (pages/), each building its DOM from the API's answers.
 * The admin's token lives in sessionStorage; a 401 sends you back to the
 * login form with the reason.
 */
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { TOKEN_KEY, whenSessionEnds } from './api.js';
import { clearBanner, nav } from './dom.js';
import { stopLive } from './live.js';
import { renderClients } from './pages/clients.js';
import { renderDebug } from './pages/debug.js';
import { renderLogin } from './pages/login.js';
import { renderMessages } from './pages/messages.js';
import { renderOverview } from './pages/overview.js';
import { renderThreads } from './pages/threads.js';
import { renderUsers } from './pages/users.js';

const SECTIONS: Record<string, () => void> = {
  overview: renderOverview,
  clients: renderClients,
  messages: renderMessages,
  threads: renderThreads,
  debug: renderDebug,
  users: renderUsers,
};

function route(): void {
  stopLive();
  clearBanner();
  if (!sessionStorage.getItem(TOKEN_KEY)) return renderLogin(route);
  nav.hidden = false;
  const name = location.hash.slice(1) || 'overview';
  const render = SECTIONS[name] ?? renderOverview;
  for (const a of nav.querySelectorAll('a')) a.toggleAttribute('aria-current', a.getAttribute('href') === '#' + name);
  render();
}

document.getElementById('logout')!.addEventListener('click', () => {
  void fetch('/v1/logout', { method: 'POST', headers: { 'x-auth-token': sessionStorage.getItem(TOKEN_KEY) ?? '' } }).catch(() => undefined);
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  renderLogin(route, 'You are logged out.');
});
whenSessionEnds((message) => renderLogin(route, message));
window.addEventListener('hashchange', route);
route();
