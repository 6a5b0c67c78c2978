import { access } from 'node:fs/promises';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
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

const exists = (p: string) => access(p).then(() => true, () => false);

export async function finishedShardCounts(out: string, shard: Pick<ShardInfo, 'outputName' | 'rowCount'>): Promise<ShardCounts | null> {
  const f = outputFiles(out, shard);
  // The writer renames the parquet into place last: its presence means the shard's files are complete.
  if (!(await exists(f.parquet))) return null;
  try {
    const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(f.parquet), columns: ['status'], compressors })) as { status: string }[];
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
