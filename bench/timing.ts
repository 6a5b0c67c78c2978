import { readFileSync } from 'node:fs';

/**
 * Shared by the benchmarks: best-of-N wall time, rounding for the printed JSON, and the CPU share
 * other processes took meanwhile (this machine is shared).
 */
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

/** Busy and total CPU seconds of the whole machine so far (/proc/stat, USER_HZ = 100). */
export function machineCpu(): { busy: number; total: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number); // user … steal (guest is inside user)
    const idle = f[3] + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: (total - idle) / 100, total: total / 100 };
  } catch {
    return null;
  }
}

/**
 * CPU seconds of this process and of its children that have exited and been waited for
 * (/proc/self/stat utime + stime + cutime + cstime): a reference script the benchmark runs as a
 * child is its own work, not another process's.
 */
function ownCpuSeconds(): number {
  try {
    // Fields after the ")" that ends the command name: state is field 3, utime is field 14.
    const after = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
    return (Number(after[11]) + Number(after[12]) + Number(after[13]) + Number(after[14])) / 100;
  } catch {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
}

/**
 * CPU taken by other processes while `fn` ran, as a share of the machine (0 = this process had
 * the machine to itself, 1 = others kept every core busy): machine busy time less this
 * process's own and its finished children's. This machine is shared: numbers measured at a high share are lower bounds.
 */
export async function othersShare<T>(fn: () => Promise<T>): Promise<{ value: T; others: number | null }> {
  const m0 = machineCpu();
  const own0 = ownCpuSeconds();
  const value = await fn();
  const m1 = machineCpu();
  const own = ownCpuSeconds() - own0;
  if (!m0 || !m1 || m1.total <= m0.total) return { value, others: null };
  const others = Math.max(0, m1.busy - m0.busy - own) / (m1.total - m0.total);
  return { value, others: round(Math.min(1, others), 2) };
}
