/** The console's DOM: its three fixed elements, an element builder, the banner, forms and tables. */

export const view = document.getElementById('view')!;
export const nav = document.getElementById('nav')!;
const banner = document.getElementById('banner')!;

export type Attrs = Record<string, string | boolean | ((e: Event) => void)>;

/** Builds an element: attributes, `on…` listeners, children (strings become text). */
export function h(tag: string, attrs: Attrs = {}, ...children: (Node | string | null | undefined | false)[]): HTMLElement {
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

/** Asks before a destructive action (disable, delete, revoke, role change); true to go ahead. */
export function confirmed(question: string): boolean {
  return window.confirm(question);
}

export function formValues(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of new FormData(form)) out[k] = String(v);
  return out;
}

export function table(headers: string[], rows: (Node | string)[][], empty: string): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  const head = h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', { scope: 'col' }, x))));
  const body = h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c, i) => h('td', { 'data-label': headers[i]! }, c)))));
  return h('div', { class: 'table-wrap' }, h('table', {}, head, body));
}

export const time = (iso: string | number): string => new Date(iso).toLocaleString();
