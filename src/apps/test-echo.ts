/**
 * The `/test` debug destination of the media-service notifications client
 * (stomp.js 2.3 on `/v1/ws?__token=`, see docs/clients.md): a
 * `WsTestReq {queue, msg}` sent to `/test` pushes `msg`, verbatim, to the
 * sender's `/user/{token}/queue/{queue}`.
 * A malformed request is answered on the sender's `/user/queue/errors`.
 */
import { AppRefusal, type Broker } from '../core/broker.js';
import { createMessage } from '../core/message.js';

export function registerTestEcho(broker: Broker): void {
  broker.registerApp('/test', (req) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(req.body.toString('utf8'));
    } catch {
      throw new AppRefusal('body of a /test message must be JSON: {"queue": "<name>", "msg": "<text to push back>"}');
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new AppRefusal('body of a /test message must be a JSON object {"queue", "msg"}');
    }
    const { queue, msg } = parsed as { queue?: unknown; msg?: unknown };
    if (typeof queue !== 'string' || queue === '') throw new AppRefusal('WsTestReq.queue is missing or not a non-empty string');
    if (typeof msg !== 'string') throw new AppRefusal('WsTestReq.msg is missing or not a string');
    broker.publishUser(
      createMessage({
        target: { kind: 'user', userId: req.principal.userId, name: queue },
        body: Buffer.from(msg, 'utf8'),
        publisherSession: req.sessionId,
      }),
    );
  });
}
