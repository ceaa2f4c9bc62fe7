/** The login form: administrators only. */
import { api, ME_KEY, TOKEN_KEY } from '../api.js';
import { clearBanner, field, formValues, h, nav, view } from '../dom.js';

export function renderLogin(onLoggedIn: () => void, message?: string): void {
  nav.hidden = true;
  clearBanner();
  const err = h('p', { class: 'error', role: 'alert', id: 'login-error' }, message ?? '');
  if (!message) err.hidden = true;
  const form = h(
    'form',
    { class: 'card login', 'aria-label': 'Log in' },
    h('h1', {}, 'Log in to Herald'),
    err,
    field('User name', h('input', { name: 'username', autocomplete: 'username', required: true })),
    field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h('button', { type: 'submit' }, 'Log in'),
  ) as HTMLFormElement;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const { username, password } = formValues(form);
    void (async () => {
      try {
        const data = await api<{ authToken: string; role: string; userId: string }[]>('POST', '/v1/login', { username, password });
        const who = data[0]!;
        if (who.role !== 'admin') {
          err.textContent = `"${username}" is not an administrator; the console needs an admin account.`;
          err.hidden = false;
          return;
        }
        sessionStorage.setItem(TOKEN_KEY, who.authToken);
        sessionStorage.setItem(ME_KEY, who.userId);
        location.hash = location.hash && location.hash !== '#login' ? location.hash : '#overview';
        onLoggedIn();
      } catch (e2) {
        err.textContent = (e2 as Error).message;
        err.hidden = false;
      }
    })();
  });
  view.replaceChildren(form);
}
