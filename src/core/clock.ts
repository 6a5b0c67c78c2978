/**
 * Time as a dependency. Code whose behaviour depends on time passing (per-host delays, retry
 * backoff, dashboard pacing, decode time limits, heartbeats, throughput and latency figures) takes a
 * `Clock` instead of calling Date.now() and setTimeout itself, with the real clock as the
 * default, so that tests drive it with a manual clock (test/helpers/manual-clock.ts) instead of
 * sleeping on the wall clock.
 */
export interface Clock {
  /** Milliseconds since the epoch (Date.now() on the real clock). */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason when `signal` aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** A wall-clock wait that an AbortSignal can cut short (rejecting with its reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export const realClock: Clock = { now: () => Date.now(), sleep };
