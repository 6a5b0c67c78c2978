import { CapfiltError } from '../../core/errors.ts';
import { storeOf, type ObjectStore } from '../storage/object-store.ts';
import { readIfPresent } from '../storage/output.ts';

/**
 * `run.json`: the run's record — config, model ids and hashes, versions, totals and filter
 * rates. The pipeline decides the content; this writes it atomically and reads it back.
 */
export async function writeRunJson(outDir: string | ObjectStore, data: Record<string, unknown>): Promise<void> {
  await storeOf(outDir).put('run.json', `${JSON.stringify(data, null, 2)}\n`);
}

export async function readRunJson(outDir: string | ObjectStore): Promise<Record<string, unknown> | null> {
  const store = storeOf(outDir);
  let text: string;
  try {
    const bytes = await readIfPresent(store, 'run.json');
    if (!bytes) return null;
    text = bytes.toString('utf8');
  } catch (e) {
    throw new CapfiltError('OUTPUT_SHARD_INVALID', `${store.locate('run.json')}: ${(e as Error).message}`, { dir: store.location }, { cause: e });
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new CapfiltError('OUTPUT_SHARD_INVALID', `${store.locate('run.json')} is not JSON: ${(e as Error).message}`, { dir: store.location }, { cause: e });
  }
}
