import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

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

/** The SIMD extensions that decide MLAS's kernels (int8 ones above all), as /proc/cpuinfo names them. */
const ISA_FLAGS = ['avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_int8', 'amx_bf16'];

/**
 * The CPU a benchmark ran on: figures from machines with and without VNNI differ for int8 by
 * 1.5–2× (docs/performance.md), so every benchmark's JSON says which this was.
 */
export function machine(): { cpu: string; family: number | null; model: number | null; cores: number; isa: string[] } {
  let text = '';
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // Not Linux: only what Node knows.
  }
  const first = text.split('\n\n')[0] ?? '';
  const field = (name: string): string | undefined => first.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1]?.trim();
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  const num = (v: string | undefined): number | null => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);
  const os = cpus();
  return { cpu: field('model name') ?? os[0]?.model ?? 'unknown', family: num(field('cpu family')), model: num(field('model')), cores: os.length, isa: ISA_FLAGS.filter((f) => flags.has(f)) };
}
