import { parentPort, workerData } from 'node:worker_threads';
import { describeError, isCapfiltError } from '../../core/errors.ts';
import { loadBlip } from '../../models/blip/index.ts';
import type { BlipModels } from '../../models/blip/types.ts';
import type { ThreadReply, ThreadRequest, ThreadInit } from './protocol.ts';

/**
 * The inference thread: owns the BLIP models of one folder and runs every captioner/filter call
 * off the main thread. onnxruntime-node's `session.run` executes synchronously (inside a
 * setImmediate), so on the main thread a long batch would freeze BullMQ's lock renewal and
 * heartbeats; here it only occupies this thread.
 */
const init = workerData as ThreadInit;
const port = parentPort!;

function errorOf(e: unknown): { code: string; message: string; details: Record<string, unknown> } {
  const { code, message } = describeError(e);
  return { code, message: message.startsWith(`${code}: `) ? message.slice(code.length + 2) : message, details: isCapfiltError(e) ? e.details : {} };
}

let models: BlipModels;
try {
  models = await loadBlip(init.dir, init.runtime);
  port.postMessage({ type: 'ready', info: models.info, captioner: models.captioner !== null, filter: models.filter !== null } satisfies ThreadReply);
} catch (e) {
  port.postMessage({ type: 'failed', error: errorOf(e) } satisfies ThreadReply);
  process.exit(0);
}

port.on('message', (req: ThreadRequest) => {
  void (async () => {
    try {
      if (req.op === 'close') {
        await models.captioner?.close();
        await models.filter?.close();
        port.postMessage({ type: 'result', id: req.id, value: null } satisfies ThreadReply);
        port.close();
        return;
      }
      const value = req.op === 'caption' ? await models.captioner!.caption(req.images, req.options) : await models.filter!.score(req.items);
      port.postMessage({ type: 'result', id: req.id, value } satisfies ThreadReply);
    } catch (e) {
      port.postMessage({ type: 'error', id: req.id, error: errorOf(e) } satisfies ThreadReply);
    }
  })();
});
