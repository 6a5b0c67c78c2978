import { Worker } from 'node:worker_threads';
import { CapfiltError, ERROR_CODES, type ErrorCode } from '../../core/errors.ts';
import type { BlipModels } from '../../models/blip/types.ts';
import type { Captioner, ImageTextScorer, TextScore } from '../../models/roles.ts';
import type { GenerationOptions } from '../../models/runtime/generation/types.ts';
import type { ImageInput, PerImage, RuntimeOptions } from '../../models/runtime/types.ts';
import { processMetrics } from '../../telemetry/metrics.ts';
import type { ThreadError, ThreadInit, ThreadReply, ThreadRequest } from './protocol.ts';

/**
 * BLIP models served by an inference thread (thread.ts), behind the same Captioner/Filter
 * interfaces as the in-thread runtime. Calls are queued in the thread in arrival order; the
 * main thread stays free for BullMQ lock renewal, heartbeats and I/O while a batch runs.
 */
function toError(e: ThreadError): Error {
  if (e.code in ERROR_CODES) return new CapfiltError(e.code as ErrorCode, e.message, e.details);
  return new Error(e.message);
}

export async function openThreadedBlip(dir: string, runtime: RuntimeOptions): Promise<BlipModels> {
  const init: ThreadInit = { entry: new URL('./thread.ts', import.meta.url).href, dir, runtime };
  const worker = new Worker(new URL('./bootstrap.mjs', import.meta.url), { workerData: init });
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 1;
  let dead: Error | null = null;

  const ready = new Promise<Extract<ThreadReply, { type: 'ready' }>>((resolve, reject) => {
    worker.on('message', (m: ThreadReply) => {
      if (m.type === 'ready') resolve(m);
      else if (m.type === 'failed') reject(toError(m.error));
      else {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.type === 'result') p?.resolve(m.value);
        else p?.reject(toError(m.error));
      }
    });
    const die = (e: Error) => {
      dead = e;
      reject(e);
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    };
    worker.on('error', die);
    worker.on('exit', (code) => die(new CapfiltError('SESSION_RUN_FAILED', `inference thread for ${dir} exited (code ${code})`)));
  });

  const call = <T>(req: Omit<Extract<ThreadRequest, { op: 'caption' }>, 'id'> | Omit<Extract<ThreadRequest, { op: 'score' }>, 'id'> | { op: 'close' }): Promise<T> => {
    if (dead) return Promise.reject(dead);
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ ...req, id });
    });
  };

  const r = await ready;
  let closed: Promise<void> | null = null;
  const close = () => {
    closed ??= (async () => {
      if (!dead) await call<null>({ op: 'close' }).catch(() => undefined);
      await worker.terminate();
    })();
    return closed;
  };
  // Latency is observed here, as the stage sees it (queueing in the thread included), so the
  // worker's /metrics shows what a batch really costs the pipeline.
  const metrics = processMetrics();
  const captioner: Captioner | null = r.captioner
    ? {
        caption: (images: ImageInput[], options: GenerationOptions) =>
          metrics.timeModel('captioner', 'caption', () => call<PerImage<string[]>[]>({ op: 'caption', images, options })),
        close,
      }
    : null;
  const filter: ImageTextScorer | null = r.filter
    ? {
        score: (items: { image: ImageInput; texts: string[] }[]) =>
          metrics.timeModel('filter', 'score', () => call<PerImage<TextScore[]>[]>({ op: 'score', items })),
        close,
      }
    : null;
  return { captioner, filter, info: r.info };
}
