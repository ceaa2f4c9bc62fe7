/**
 * SEND: to a topic (after the server-topic refusal and the access rules), a
 * queue (stored before the RECEIPT), a user's mailbox, or a server-side
 * destination (`/app/…`), whose business refusals go to the sender's
 * `/user/queue/errors`.
 *
 * A SEND to a topic is carried out synchronously whenever nothing has to be
 * waited for (the publish rate allows it, the server-topic refusal and the
 * access rules answer at once, no RECEIPT waits for a store): it returns
 * undefined, and the connection goes on with the next frame in the same
 * turn. Anything that must wait makes it return a Promise, and the
 * connection holds the frames behind it until that settles.
 */
import { turnNow } from '../../clock.js';
import { AppForbidden, AppRefusal } from '../../core/broker.js';
import { parseDestination, topicProblem, type ParsedDestination } from '../../core/destination.js';
import { isSelf, resolveUserId } from '../../core/mailbox.js';
import { createMessage } from '../../core/message.js';
import { header, type StompFrame } from './codec.js';
import { StompError } from './errors.js';
import { customHeaders } from './message-frame.js';
import type { StompState } from './state.js';

export function onSend(c: StompState, frame: StompFrame): void | Promise<void> {
  const wait = c.bucket.take();
  return wait > 0 ? sendLater(c, frame, wait) : sendNow(c, frame);
}

/** Too fast: stop reading from this client until it may publish again. */
async function sendLater(c: StompState, frame: StompFrame, wait: number): Promise<void> {
  c.pauseReading('rate');
  do await new Promise((r) => setTimeout(r, wait));
  while (!c.closed && (wait = c.bucket.take()) > 0);
  // Ended meanwhile (kicked, token expired, left): nothing it sent is carried out any more, as after any close.
  if (c.closed) return;
  c.resumeReading('rate');
  const r = sendNow(c, frame);
  if (r) await r;
}

function sendNow(c: StompState, frame: StompFrame): void | Promise<void> {
  const dest = header(frame, 'destination');
  if (!dest) throw new StompError('SEND needs a destination header', 'add destination:/topic/…, /queue/…, /user/…/queue/… or /app/…');
  // A destination this connection sent to before is known to be a valid topic: no parsing again.
  const known = c.sentTopics?.get(dest);
  if (known !== undefined) {
    counted(c);
    return toTopic(c, frame, dest, known);
  }
  const parsed = parseDestination(dest);
  if (typeof parsed === 'string') throw new StompError('invalid destination', parsed);
  counted(c);
  if (parsed.kind !== 'topic') return toOther(c, frame, dest, parsed);
  const problem = topicProblem(parsed.topic);
  if (problem) throw new StompError('invalid destination', `${dest}: ${problem}`);
  c.rememberTopic(dest, parsed.topic);
  return toTopic(c, frame, dest, parsed.topic);
}

/** The SEND is valid so far: it renews the token and counts as a message in. */
function counted(c: StompState): void {
  // Sending is use: a chat visitor on /stomp is not logged out while chatting (heart-beats do not count).
  if (c.renewOnUse) c.ctx.auth.renewPrincipal(c.principal);
  c.ctx.metrics.messagesInOf[c.protocol].inc();
}

function toTopic(c: StompState, frame: StompFrame, dest: string, topic: string): void | Promise<void> {
  // Topics the server writes itself ($SYS, chat threads) are refused to every client, before the access rules.
  const refusal = c.broker.publishRefusal(topic);
  if (refusal instanceof Promise) return refusal.then((r) => (c.closed ? undefined : mayPublish(c, frame, dest, topic, r)));
  return mayPublish(c, frame, dest, topic, refusal);
}

function mayPublish(c: StompState, frame: StompFrame, dest: string, topic: string, refusal: string | undefined): void | Promise<void> {
  if (refusal !== undefined) throw new StompError('not allowed', refusal, 'server_topic');
  const may = c.publishAcl.check(topic);
  if (may instanceof Promise) return may.then((m) => (c.closed ? undefined : publish(c, frame, dest, topic, m)));
  return publish(c, frame, dest, topic, may);
}

function publish(c: StompState, frame: StompFrame, dest: string, topic: string, may: boolean): void | Promise<void> {
  if (!may) throw new StompError('not allowed', `the access rules do not let "${c.principal.name}" publish to ${dest}`, null);
  const msg = createMessage({
    target: { kind: 'topic', topic },
    body: frame.body,
    contentType: header(frame, 'content-type'),
    headers: customHeaders(frame),
    publisherSession: c.id,
    timestamp: turnNow(),
  });
  c.broker.publishTopic(msg);
  // Cluster mode: stored for every persistent MQTT session it matches before the RECEIPT (a store failure is an ERROR, no RECEIPT).
  if (header(frame, 'receipt') !== undefined) return c.broker.committed(msg).then(() => c.receipt(frame));
}

/**
 * Queues, mailboxes and server-side destinations. Messages are made from
 * plain literals: createMessage reads an object built by spread much
 * times slower.
 */
async function toOther(c: StompState, frame: StompFrame, dest: string, parsed: Exclude<ParsedDestination, { kind: 'topic' }>): Promise<void> {
  const contentType = header(frame, 'content-type');
  const headers = customHeaders(frame);
  const base = { body: frame.body, contentType, headers, publisherSession: c.id };
  switch (parsed.kind) {
    case 'queue':
      await c.broker.publishQueue(createMessage({ target: { kind: 'queue', name: parsed.name }, body: base.body, contentType, headers, publisherSession: c.id }));
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
      c.broker.publishUser(createMessage({ target: { kind: 'user', userId, name: parsed.name }, body: base.body, contentType, headers, publisherSession: c.id }));
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
