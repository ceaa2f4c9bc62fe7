import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { freshDatabase, servicesMissing } from '../helpers/services.js';
import { storeSuite } from '../helpers/store-suite/index.js';

let current = '';
storeSuite(
  'postgres',
  {
    async open() {
      current = await freshDatabase();
      return PostgresStore.open({ connectionString: current, poolSize: 4 });
    },
    async reopen() {
      return PostgresStore.open({ connectionString: current, poolSize: 4 });
    },
  },
  servicesMissing('pg'),
);
