import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import { writeFileAtomic } from './atomic.ts';

/**
 * `run.json`: the run's record — config, model ids and hashes, versions, totals and filter
 * rates. The pipeline decides the content; this writes it atomically and reads it back.
 */
export async function writeRunJson(outDir: string, data: Record<string, unknown>): Promise<void> {
  await writeFileAtomic(join(outDir, 'run.json'), `${JSON.stringify(data, null, 2)}\n`);
}

export async function readRunJson(outDir: string): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(join(outDir, 'run.json'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CapfiltError('OUTPUT_SHARD_INVALID', `${outDir}/run.json: ${(e as Error).message}`, { dir: outDir }, { cause: e });
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new CapfiltError('OUTPUT_SHARD_INVALID', `${outDir}/run.json is not JSON: ${(e as Error).message}`, { dir: outDir }, { cause: e });
  }
}
