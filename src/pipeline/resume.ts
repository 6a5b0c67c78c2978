import { asyncBufferFromFile, parquetReadObjects, type AsyncBuffer } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { storeOf, type ObjectStore } from '../io/storage/object-store.ts';
import { readIfPresent } from '../io/storage/output.ts';
import { shardPaths, type ShardPaths } from '../io/writers/shard.ts';
import type { ShardCounts } from './run-state.ts';
import type { ShardInfo } from '../core/shard.ts';

/**
 * Resume rule: a shard is finished when its parquet exists (the writer renames every file into
 * place only when complete, the parquet last). Its counts are read back from
 * the parquet's `status` column, the per-row source of truth, so a resumed run's totals
 * reconcile exactly with what is on disk. An unreadable or row-count-mismatched parquet means
 * "not finished": the shard is processed again and its files replaced atomically.
 */
export function outputFiles(out: string, shard: Pick<ShardInfo, 'outputName'>): ShardPaths {
  return shardPaths(out, shard.outputName);
}

/** The shard's parquet, or null when there is none (on S3: one GET, which also answers "exists?"). */
async function parquetOf(out: string | ObjectStore, name: string): Promise<AsyncBuffer | null> {
  const store = storeOf(out);
  if (store.kind === 'fs') return asyncBufferFromFile(store.locate(`${name}.parquet`)).catch(() => null);
  const b = await readIfPresent(store, `${name}.parquet`);
  return b ? (b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer) : null;
}

export async function finishedShardCounts(out: string | ObjectStore, shard: Pick<ShardInfo, 'outputName' | 'rowCount'>): Promise<ShardCounts | null> {
  // The writer puts the parquet in place last (renamed locally, uploaded last to S3): its presence means the shard's files are complete.
  const file = await parquetOf(out, shard.outputName);
  if (!file) return null;
  try {
    const rows = (await parquetReadObjects({ file, columns: ['status'], compressors })) as { status: string }[];
    if (rows.length !== shard.rowCount) return null;
    const c: ShardCounts = { rows: rows.length, kept: 0, filtered: 0, failed: 0 };
    for (const r of rows) {
      if (r.status === 'kept') c.kept++;
      else if (r.status === 'filtered') c.filtered++;
      else if (r.status === 'failed') c.failed++;
      else return null;
    }
    return c;
  } catch {
    return null;
  }
}
