import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './cli.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from './redis-cleanup.ts';

/**
 * A finished output folder from a real `capfilt demo` run (the bundled BLIP and CLIP, captions,
 * scores, labels, kept and filtered rows, tars, report.html), for tests that read outputs the
 * way their users will.
 */
export interface DemoOutput {
  out: string;
  stdout: string;
  close(): Promise<void>;
}

export async function demoOutput(rows: number, name: string): Promise<DemoOutput> {
  const out = join(mkdtempSync(join(tmpdir(), `capfilt-${name}-`)), 'out');
  const prefix = uniquePrefix(name);
  const r = await runCli('demo', '--rows', String(rows), '--out', out, '--no-dashboard', '--progress', 'none', '--redis-url', REDIS_URL, '--prefix', prefix);
  if (r.code !== 0) throw new Error(`capfilt demo exited ${r.code}:\n${r.stdout}\n${r.stderr.slice(-3000)}`);
  return {
    out,
    stdout: r.stdout,
    close: async () => {
      rmSync(join(out, '..'), { recursive: true, force: true });
      await deletePrefix(prefix);
    },
  };
}
