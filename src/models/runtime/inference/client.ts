import { Worker } from 'node:worker_threads';
import { CapfiltError, ERROR_CODES, type ErrorCode } from '../../../core/errors.ts';
import type { RuntimeOptions } from '../types.ts';
import type { RoleDescriptor, ThreadError, ThreadInit, ThreadReply } from './protocol.ts';

/**
 * Models served by an inference thread (thread.ts), each role behind a proxy with the role's
 * own interface: its methods post a call to the thread, its props are the values the thread
 * reported when ready. `close` on any role (or on the handle) closes the whole thread.
 */
export interface InferenceThread {
  info: Record<string, unknown>;
  roles: Record<string, RoleDescriptor>;
  /** A proxy implementing role `name`, or null when the folder does not serve it. */
  role<T>(name: string): T | null;
  close(): Promise<void>;
}

function toError(e: ThreadError): Error {
  if (e.code in ERROR_CODES) return new CapfiltError(e.code as ErrorCode, e.message, e.details);
  return new Error(e.message);
}

export async function openInferenceThread(serveModule: string, dir: string, runtime: RuntimeOptions): Promise<InferenceThread> {
  const init: ThreadInit = { entry: new URL('./thread.ts', import.meta.url).href, serve: serveModule, dir, runtime };
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

  const post = <T>(req: { op: 'call'; role: string; method: string; args: unknown[] } | { op: 'close' }): Promise<T> => {
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
      if (!dead) await post<null>({ op: 'close' }).catch(() => undefined);
      await worker.terminate();
    })();
    return closed;
  };
  const proxies = new Map<string, unknown>();
  return {
    info: r.info,
    roles: r.roles,
    role<T>(name: string): T | null {
      const d = r.roles[name];
      if (!d) return null;
      if (!proxies.has(name)) {
        const p: Record<string, unknown> = { ...d.props, close };
        for (const m of d.methods) p[m] = (...args: unknown[]) => post({ op: 'call', role: name, method: m, args });
        proxies.set(name, p);
      }
      return proxies.get(name) as T;
    },
    close,
  };
}
