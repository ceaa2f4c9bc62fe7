/**
 * SEND: to a topic (after the server-topic refusal and the access rules), a
 * queue (stored before the RECEIPT), a user's mailbox, or a server-side
 * destination (`/app/…`), whose business refusals go to the sender's
 * `/user/queue/errors`.
 */
import { AppForbidden, AppRefusal } from '../../core/broker.js';
import { parseDestination, topicProblem } from '../../core/destination.js';
import { isSelf, resolveUserId } from '../../core/mailbox.js';
import { createMessage } from '../../core/message.js';
import { header, type StompFrame } from './codec.js';
import { StompError } from './errors.js';
import { customHeaders } from './message-frame.js';
import type { StompState } from './state.js';

export async function onSend(c: StompState, frame: StompFrame): Promise<void> {
  let wait = c.bucket.take();
  if (wait > 0) {
    // Too fast: stop reading from this client until it may publish again.
    c.transport.pause();
    do await new Promise((r) => setTimeout(r, wait));
    while ((wait = c.bucket.take()) > 0);
    if (!c.paused) c.transport.resume();
  }
  const dest = header(frame, 'destination');
  if (!dest) throw new StompError('SEND needs a destination header', 'add destination:/topic/…, /queue/…, /user/…/queue/… or /app/…');
  const parsed = parseDestination(dest);
  if (typeof parsed === 'string') throw new StompError('invalid destination', parsed);
  // Sending is use: a chat visitor on /stomp is not logged out while chatting (heart-beats do not count).
  if (c.renewOnUse) c.ctx.auth.renewPrincipal(c.principal);
  c.ctx.metrics.messagesInOf[c.protocol].inc();
  const contentType = header(frame, 'content-type');
  const headers = customHeaders(frame);
  const base = { body: frame.body, contentType, headers, publisherSession: c.id };
  switch (parsed.kind) {
    case 'topic': {
      const problem = topicProblem(parsed.topic);
      if (problem) throw new StompError('invalid destination', `${dest}: ${problem}`);
      // Topics the server writes itself ($SYS, chat threads) are refused to every client, before the access rules.
      let refusal = c.broker.publishRefusal(parsed.topic);
      if (refusal instanceof Promise) refusal = await refusal;
      if (refusal !== undefined) throw new StompError('not allowed', refusal, 'server_topic');
      let may = c.publishAcl.check(parsed.topic);
      if (may instanceof Promise) may = await may;
      if (!may) {
        throw new StompError('not allowed', `the access rules do not let "${c.principal.name}" publish to ${dest}`, null);
      }
      const msg = createMessage({ ...base, target: { kind: 'topic', topic: parsed.topic } });
      c.broker.publishTopic(msg);
      // Cluster mode: stored for every persistent MQTT session it matches before the RECEIPT (a store failure is an ERROR, no RECEIPT).
      if (header(frame, 'receipt') !== undefined) await c.broker.committed(msg);
      break;
    }
    case 'queue':
      await c.broker.publishQueue(createMessage({ ...base, target: { kind: 'queue', name: parsed.name } }));
      break;
    case 'user': {
      let userId = c.principal.userId;
      if (parsed.who !== null && !isSelf(c.principal, parsed.who)) {
        const role = c.principal.role;
        if (role === 'user' && !c.ctx.config.userSendToOthers) {
          throw new StompError('not allowed', `sending to another user's mailbox (${dest}) needs the service or admin role`);
        }
        userId = await resolveUserId(c.ctx.store, c.ctx.auth, parsed.who);
      }
      c.broker.publishUser(createMessage({ ...base, target: { kind: 'user', userId, name: parsed.name } }));
      break;
    }
    case 'server': {
      const handler = c.broker.findApp(dest);
      if (!handler) throw new StompError('no handler', `nothing on this server handles ${dest}`);
      try {
        await handler({ sessionId: c.id, principal: c.principal, destination: dest, ...base });
      } catch (err) {
        if (err instanceof AppForbidden) throw new StompError('not allowed', err.message);
        if (!(err instanceof AppRefusal)) throw err;
        reportToSender(c, dest, err.message, header(frame, 'receipt'));
      }
      break;
    }
  }
  c.receipt(frame);
}

/** Business-rule errors go to the sender's `/user/queue/errors`; the connection stays up. */
function reportToSender(c: StompState, destination: string, message: string, receipt: string | undefined): void {
  const body = Buffer.from(JSON.stringify({ error: message, destination, ...(receipt ? { receipt } : {}) }));
  c.broker.publishUser(
    createMessage({ target: { kind: 'user', userId: c.principal.userId, name: 'errors' }, body, contentType: 'application/json' }),
  );
}
