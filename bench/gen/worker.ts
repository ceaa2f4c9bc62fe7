/**
 * A generator worker process (started by pool.ts): takes commands from the
 * coordinator over IPC, runs its share of the clients, answers with counts.
 */
import { FlowEngine, type FlowSpec } from './flows.js';
import { Sender, type SendSpec } from './sender.js';
import { Storm, type StormSpec } from './storm.js';

export type Command =
  | { t: 'flow-setup'; spec: FlowSpec }
  | { t: 'flow-subs' | 'flow-pubs' | 'flow-start' | 'flow-counts' | 'flow-stop' | 'flow-final' | 'flow-close' }
  | { t: 'flow-record'; on: boolean }
  | { t: 'storm'; spec: StormSpec }
  | { t: 'storm-held' | 'storm-release' | 'cpu' | 'exit' }
  | { t: 'send-start'; spec: SendSpec }
  | { t: 'send-record'; on: boolean }
  | { t: 'send-counts' | 'send-stop' };

const index = Number(process.env['BENCH_WORKER_INDEX'] ?? 0);
let flow: FlowEngine | undefined;
let storm: Storm | undefined;
let sender: Sender | undefined;

const send = (msg: unknown): void => {
  if (process.connected) process.send!(msg);
};

function needSender(): Sender {
  if (!sender) throw new Error('no sender started in this worker');
  return sender;
}

function needFlow(): FlowEngine {
  if (!flow) throw new Error('no flow set up in this worker');
  return flow;
}

async function handle(c: Command): Promise<unknown> {
  switch (c.t) {
    case 'flow-setup':
      flow?.close();
      flow = new FlowEngine(c.spec, (m) => send({ ...(m as object), from: index }));
      return null;
    case 'flow-subs':
      return needFlow().connectSubscribers();
    case 'flow-pubs':
      return needFlow().connectPublishers();
    case 'flow-start':
      return needFlow().start();
    case 'flow-record':
      return needFlow().record(c.on);
    case 'flow-counts':
      return needFlow().counts();
    case 'flow-stop':
      return needFlow().stop();
    case 'flow-final':
      return needFlow().final();
    case 'flow-close':
      flow?.close();
      flow = undefined;
      return null;
    case 'storm':
      storm?.release();
      storm = new Storm(c.spec);
      return storm.run();
    case 'storm-held':
      return storm?.held() ?? { alive: 0, closed: 0, reasons: [] };
    case 'storm-release':
      storm?.release();
      storm = undefined;
      return null;
    case 'send-start':
      sender = new Sender(c.spec);
      return sender.start();
    case 'send-record':
      return needSender().record(c.on);
    case 'send-counts':
      return needSender().counts();
    case 'send-stop': {
      const final = await needSender().stop();
      sender = undefined;
      return final;
    }
    case 'cpu': {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    }
    case 'exit':
      flow?.close();
      storm?.release();
      void sender?.stop();
      setImmediate(() => process.exit(0));
      return null;
  }
}

type Incoming = ({ id: number } & Command) | { t: 'acks'; from: number; counts: Float64Array };

process.on('message', (m: Incoming) => {
  if (m.t === 'acks') {
    flow?.remoteAcks(m.from, m.counts);
    return;
  }
  handle(m).then(
    (result) => send({ id: m.id, result: result ?? null }),
    (err: unknown) => send({ id: m.id, error: (err as Error).message ?? String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
