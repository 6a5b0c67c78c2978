/** Shared by the model benchmarks: best-of-N wall time and rounding for the printed JSON. */
export const round = (x: number, d = 3): number => Number(x.toFixed(d));

/** Seconds of the fastest of `runs` calls (the least disturbed one on a shared machine). */
export async function timeBest(runs: number, fn: () => Promise<unknown>): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    best = Math.min(best, performance.now() - t);
  }
  return best / 1000;
}
