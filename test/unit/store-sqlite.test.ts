import { rmSync } from 'node:fs';
import { after } from 'node:test';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { tempDir } from '../helpers/server.js';
import { storeSuite } from '../helpers/store-suite/index.js';

const dirs: string[] = [];
let current = '';
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

storeSuite('sqlite', {
  async open() {
    current = tempDir('herald-store-');
    dirs.push(current);
    return new SqliteStore({ dataDir: current });
  },
  async reopen() {
    return new SqliteStore({ dataDir: current });
  },
});
