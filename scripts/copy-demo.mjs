// Copies the demo pages (web/demo) and the browser builds of the client
// libraries the demo pages use (the same as the client profiles of docs/clients.md) into dist/web/demo, where Herald serves them at /demo/.
import { cpSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'web', 'demo');
mkdirSync(join(out, 'lib'), { recursive: true });
cpSync(join(root, 'web', 'demo'), out, { recursive: true });
const modules = join(root, 'node_modules');
const libs = {
  'stomp.min.js': join(modules, 'stompjs', 'lib', 'stomp.min.js'),
  'stomp.umd.min.js': join(modules, '@stomp', 'stompjs', 'bundles', 'stomp.umd.min.js'),
  'paho-mqtt-min.js': join(modules, 'paho-mqtt', 'paho-mqtt-min.js'),
};
for (const [name, from] of Object.entries(libs)) cpSync(from, join(out, 'lib', name));
