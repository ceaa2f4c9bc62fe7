/**
 * The shape of src/: the dependency direction the README draws, checked on
 * the import graph itself, so it cannot drift back.
 *
 *   cli → server → {http, protocols, apps} → {core, transports} → {store, bus}
 *
 * Engines (core, bus, store) never name a protocol, an app or an HTTP route;
 * protocols never import each other; nothing imports in a circle; and no
 * file grows past the size where it usually holds two ideas.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const MAX_LINES = 450;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

const FILES = sourceFiles(SRC).map((f) => relative(SRC, f));
const IMPORT = /^\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms;

/** Imports of each file, as paths relative to src/ (type-only imports count: they tie the modules together too). */
const GRAPH = new Map<string, string[]>(
  FILES.map((file) => {
    const text = readFileSync(join(SRC, file), 'utf8');
    const targets = [...text.matchAll(IMPORT)].map((m) => relative(SRC, resolve(SRC, dirname(file), m[1]!.replace(/\.js$/, '.ts'))));
    return [file, targets];
  }),
);

const top = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/')) : file);

describe('layering of src/', () => {
  it('has no import cycle', () => {
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const cycles: string[] = [];
    const visit = (f: string): void => {
      state.set(f, 'open');
      stack.push(f);
      for (const t of GRAPH.get(f) ?? []) {
        if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].join(' → '));
        else if (!state.has(t)) visit(t);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of FILES) if (!state.has(f)) visit(f);
    assert.deepEqual(cycles, [], `import cycles:\n${cycles.join('\n')}`);
  });

  it('keeps the engines (core, bus, store) free of protocols, apps and HTTP', () => {
    const bad: string[] = [];
    for (const [file, targets] of GRAPH) {
      if (!['core', 'bus', 'store'].includes(top(file))) continue;
      for (const t of targets) if (['protocols', 'apps', 'http'].includes(top(t))) bad.push(`${file} → ${t}`);
    }
    assert.deepEqual(bad, []);
  });

  it('lets protocols share machinery through core and transports only, never by importing each other or http', () => {
    const bad: string[] = [];
    for (const [file, targets] of GRAPH) {
      if (top(file) !== 'protocols') continue;
      const own = file.split('/')[1];
      for (const t of targets) {
        if (top(t) === 'http' || (top(t) === 'protocols' && t.split('/')[1] !== own)) bad.push(`${file} → ${t}`);
      }
    }
    assert.deepEqual(bad, []);
  });

  it(`has no file over ${MAX_LINES} lines`, () => {
    const long = FILES.map((f) => [f, readFileSync(join(SRC, f), 'utf8').split('\n').length] as const).filter(([, n]) => n > MAX_LINES);
    assert.deepEqual(long.map(([f, n]) => `${f}: ${n}`), []);
  });
});
