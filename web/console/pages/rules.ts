/**
 * Rules: the topic access rules in force (aclFile), read-only, in the
 * order they are tried; and Reload, which asks the server to read its
 * files again (POST /api/admin/reload) and shows its answer.
 */
import { api, attempt } from '../api.js';
import { confirmed, h, showInfo, table, view } from '../dom.js';

interface Rule {
  effect: 'allow' | 'deny';
  action: string;
  topic: string;
  who: string;
}

const WHO: Record<string, string> = { '*': 'everyone', anonymous: 'anonymous clients', user: 'every logged-in user' };

function who(w: string): string {
  if (WHO[w]) return WHO[w];
  if (w.startsWith('role:')) return `role ${w.slice(5)}`;
  if (w.startsWith('name:')) return `user ${w.slice(5)}`;
  return w;
}

export function renderRules(): void {
  const summary = h('p', { id: 'rules-summary' });
  const list = h('div', { id: 'rules' });
  const result = h('div', { id: 'reload-result', 'aria-live': 'polite' });

  const load = async (): Promise<void> => {
    const acl = await api<{ file: string | null; rules: Rule[]; summary: string }>('GET', '/api/admin/acl');
    summary.textContent = acl.summary[0]!.toUpperCase() + acl.summary.slice(1) + '.';
    list.replaceChildren(
      acl.file
        ? table(
            ['#', 'Effect', 'Action', 'Topic filter', 'Who'],
            acl.rules.map((r, i) => [String(i + 1), h('span', { class: `badge ${r.effect}` }, r.effect), r.action === 'all' ? 'publish and subscribe' : r.action, h('code', {}, r.topic), who(r.who)]),
            'The file holds no rules: nothing is allowed to anyone.',
          )
        : '',
    );
  };

  const reload = async (): Promise<void> => {
    if (!(await confirmed('Reload the access rules and TLS files?', { action: 'Reload', detail: 'The server reads aclFile (and its TLS certificate) again; rules that do not load leave the current ones in force.' }))) return;
    // A part that does not load answers 422, whose message (shown as the error) names it; the rest is reloaded.
    const answer = await api<unknown>('POST', '/api/admin/reload');
    result.replaceChildren(h('p', { class: 'note' }, 'The server answered: ', h('code', {}, JSON.stringify(answer))));
    showInfo('Reloaded.');
    await load();
  };

  view.replaceChildren(
    h('h1', {}, 'Rules'),
    summary,
    h('div', { class: 'toolbar' }, h('button', { type: 'button', onclick: () => void attempt(reload) }, 'Reload'), h('button', { type: 'button', class: 'secondary', onclick: () => void attempt(load) }, 'Refresh')),
    result,
    list,
    h('p', { class: 'note' }, 'Rules are read from the JSON file named by aclFile; the first rule that matches a client and a topic decides. {user}, {app} and {clientid} stand for the client’s own values. See docs/security.md.'),
  );
  void attempt(load);
}
