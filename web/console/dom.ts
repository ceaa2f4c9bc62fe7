/**
 * The console's DOM: its fixed elements, an element builder, the banner,
 * forms, tables, a pager, and the dialogs that ask before a change.
 */

export const view = document.getElementById('view')!;
export const nav = document.getElementById('nav')!;
const banner = document.getElementById('banner')!;

export type Attrs = Record<string, string | boolean | ((e: Event) => void)>;
export type Child = Node | string | null | undefined | false;

/** Builds an element: attributes, `on…` listeners, children (strings become text). */
export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** A labelled control: every input has a visible label. */
export function field(label: string, input: HTMLElement): HTMLElement {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

export function showError(message: string): void {
  banner.textContent = message;
  banner.className = 'error';
  banner.hidden = false;
}

export function showInfo(message: string): void {
  banner.textContent = message;
  banner.className = 'info';
  banner.hidden = false;
}

export function clearBanner(): void {
  banner.hidden = true;
}

export interface ConfirmOptions {
  /** The button that goes ahead ("Disable", "Delete"); "Go ahead" when not given. */
  action?: string;
  /** What follows, in a second paragraph. */
  detail?: string;
  /** A destructive change: the button is red. */
  danger?: boolean;
  /** Fields shown in the dialog (a new password); their values come back in `values`. */
  fields?: HTMLElement[];
}

/**
 * Asks before a change (disable, delete, revoke, role change, close): a
 * modal dialog with the question, what follows, and Cancel or the action.
 * Resolves with the values of its fields when confirmed, or null. Escape
 * and Cancel both answer no.
 */
export function ask(question: string, options: ConfirmOptions = {}): Promise<Record<string, string> | null> {
  const form = h(
    'form',
    { method: 'dialog' },
    h('h2', { id: 'dialog-question' }, question),
    options.detail ? h('p', {}, options.detail) : null,
    ...(options.fields ?? []),
    h(
      'div',
      { class: 'actions dialog-actions' },
      h('button', { type: 'button', class: 'secondary', value: 'cancel' }, 'Cancel'),
      h('button', { type: 'submit', value: 'ok', ...(options.danger ? { class: 'danger-solid' } : {}) }, options.action ?? 'Go ahead'),
    ),
  ) as HTMLFormElement;
  const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'dialog-question' }, form) as HTMLDialogElement;
  document.body.append(dialog);
  return new Promise((resolve) => {
    let answer: Record<string, string> | null = null;
    form.querySelector<HTMLButtonElement>('button[value="cancel"]')!.addEventListener('click', () => dialog.close());
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!form.reportValidity()) return;
      answer = formValues(form);
      dialog.close();
    });
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(answer);
    });
    dialog.showModal();
    (form.querySelector<HTMLElement>('input') ?? form.querySelector<HTMLElement>('button[value="cancel"]'))!.focus();
  });
}

/** ask() for a yes or no. */
export async function confirmed(question: string, options: ConfirmOptions = {}): Promise<boolean> {
  return (await ask(question, options)) !== null;
}

export function formValues(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of new FormData(form)) out[k] = String(v);
  return out;
}

/** A table that becomes labelled cards on a phone; `empty` says what an empty list means. */
export function table(headers: string[], rows: (Node | string)[][], empty: string): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  const head = h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', { scope: 'col' }, x))));
  const body = h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c, i) => h('td', { 'data-label': headers[i] || 'Actions' }, c)))));
  return h('div', { class: 'table-wrap' }, h('table', {}, head, body));
}

/**
 * Previous / next and "page x of y (n …)" for a paged list; calls `go` with
 * the page asked for. Nothing to page through: only the count.
 */
export function pager(page: number, pages: number, total: number, noun: string | [string, string], go: (page: number) => void): HTMLElement {
  const [one, many] = typeof noun === 'string' ? [noun, noun + 's'] : noun;
  const count = `${total} ${total === 1 ? one : many}`;
  if (pages <= 1) return h('p', { class: 'pager' }, count);
  return h(
    'nav',
    { class: 'pager', 'aria-label': `Pages of ${many}` },
    h('button', { type: 'button', class: 'secondary', ...(page <= 1 ? { disabled: true } : {}), onclick: () => go(page - 1) }, '‹ Previous'),
    h('span', { 'aria-live': 'polite' }, `Page ${page} of ${pages} (${count})`),
    h('button', { type: 'button', class: 'secondary', ...(page >= pages ? { disabled: true } : {}), onclick: () => go(page + 1) }, 'Next ›'),
  );
}

export const time = (iso: string | number): string => new Date(iso).toLocaleString();

/** A size in words: `512 B`, `3.2 KiB`, `1.5 MiB`. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1_048_576) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1_073_741_824) return `${(n / 1_048_576).toFixed(1)} MiB`;
  return `${(n / 1_073_741_824).toFixed(2)} GiB`;
}

/** How long ago, in words: `12 s`, `4 min`, `3 h 5 min`, `2 d 1 h`. */
export function ago(at: string | number | null | undefined): string {
  if (at === null || at === undefined) return '–';
  return duration(Math.max(0, Date.now() - new Date(at).getTime()) / 1000);
}

export function duration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** A definition list of facts (label, value); values that are nodes stay as they are. */
export function facts(rows: [string, Node | string][], id?: string): HTMLElement {
  const dl = h('dl', { class: 'facts', ...(id ? { id } : {}) });
  for (const [k, v] of rows) dl.append(h('dt', {}, k), h('dd', {}, v));
  return dl;
}

/** Segmented buttons (one pressed): calls `choose` with the value picked. */
export function segmented(label: string, options: [string, string][], current: string, choose: (value: string) => void): HTMLElement {
  const group = h('div', { class: 'ranges', role: 'group', 'aria-label': label });
  for (const [value, text] of options) {
    const b = h('button', { type: 'button', 'aria-pressed': String(value === current) }, text);
    b.addEventListener('click', () => {
      for (const x of group.querySelectorAll('button')) x.setAttribute('aria-pressed', String(x === b));
      choose(value);
    });
    group.append(b);
  }
  return group;
}
