import { parentPort, workerData } from 'node:worker_threads';
import { describeError, isCapfiltError } from '../../../core/errors.ts';
import type { ServeFn, ServedModels, ThreadInit, ThreadReply, ThreadRequest } from './protocol.ts';

/**
 * The inference thread: owns the models of one folder and runs every role call off the main
 * thread. onnxruntime-node's `session.run` executes synchronously (inside a setImmediate), so on
 * the main thread a long batch would freeze BullMQ's lock renewal and heartbeats; here it only
 * occupies this thread. Calls run in arrival order.
 */
const init = workerData as ThreadInit;
const port = parentPort!;

function errorOf(e: unknown): { code: string; message: string; details: Record<string, unknown> } {
  const { code, message } = describeError(e);
  return { code, message: message.startsWith(`${code}: `) ? message.slice(code.length + 2) : message, details: isCapfiltError(e) ? e.details : {} };
}

let served: ServedModels;
try {
  const { serve } = (await import(init.serve)) as { serve: ServeFn };
  served = await serve(init.dir, init.runtime);
  const roles = Object.fromEntries(Object.entries(served.roles).map(([name, r]) => [name, { methods: r.methods, props: r.props }]));
  port.postMessage({ type: 'ready', info: served.info, roles } satisfies ThreadReply);
} catch (e) {
  port.postMessage({ type: 'failed', error: errorOf(e) } satisfies ThreadReply);
  process.exit(0);
}

port.on('message', (req: ThreadRequest) => {
  void (async () => {
    try {
      if (req.op === 'close') {
        await served.close();
        port.postMessage({ type: 'result', id: req.id, value: null } satisfies ThreadReply);
        port.close();
        return;
      }
      const role = served.roles[req.role];
      if (!role || !role.methods.includes(req.method)) throw new Error(`inference thread for ${init.dir}: no method ${req.role}.${req.method}`);
      const fn = (role.impl as Record<string, (...a: unknown[]) => Promise<unknown>>)[req.method];
      const value = await fn.apply(role.impl, req.args);
      port.postMessage({ type: 'result', id: req.id, value } satisfies ThreadReply);
    } catch (e) {
      port.postMessage({ type: 'error', id: req.id, error: errorOf(e) } satisfies ThreadReply);
    }
  })();
});
