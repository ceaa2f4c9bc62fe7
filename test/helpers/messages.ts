/** The message service over HTTP, for tests that need messages in users' mailboxes. */
import assert from 'node:assert/strict';
import { api, type TestServer } from './server.js';

/** The answer of `POST /api/message/sendMessage`. */
export interface SendResult {
  id: string;
  receivers: string[];
  unknownReceivers: string[];
  delivered: number;
}

/** Sends a message as the holder of `token`; fails the test unless it is accepted. */
export async function sendMessage(s: TestServer, token: string, body: unknown): Promise<SendResult> {
  const r = await api<SendResult>(s.url, 'POST', '/api/message/sendMessage', { token, body });
  assert.equal(r.status, 200, r.body.message);
  return r.body.data;
}
