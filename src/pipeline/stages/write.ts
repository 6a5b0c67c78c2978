import { CapfiltError } from '../../core/errors.ts';
import { openOutput } from '../../io/storage/output.ts';
import { writeShardFiles, type ShardPaths } from '../../io/writers/shard.ts';
import type { ShardStats } from '../../io/writers/stats.ts';
import type { StageRunContext } from './types.ts';
import type { ShardState } from '../../core/shard.ts';

/**
 * Write stage: the shard's output files from its final records (src/io/writers/shard.ts).
 * Input:  every record final (kept/filtered/failed; the processor settles pending rows with
 *         finalizeRecords first), kept rows with a staged image and `selected` decided.
 * Output: <output.dir>/NNNNN.tar, filtered/NNNNN.tar, NNNNN_stats.json, NNNNN.parquet, the
 *         parquet renamed into place last ("parquet exists" = shard done; on an s3:// output the
 *         files are written to a scratch folder and uploaded whole, the parquet last). Rewriting is
 *         idempotent: a retried job produces the same files. The parquet's stage columns are
 *         the chain's table's (`ctx.columns`; by default the built-in record columns).
 */
export async function writeShard(state: ShardState, ctx: StageRunContext<'output' | 's3'>): Promise<{ paths: ShardPaths; stats: ShardStats }> {
  const outDir = ctx.config.output.dir;
  if (!outDir) throw new CapfiltError('CONFIG_INVALID', 'output.dir is not set: the write stage needs an output folder');
  const spent = Object.values(state.timings).reduce<number>((a, b) => a + (b ?? 0), 0);
  const name = state.shard.outputName;
  return openOutput(outDir, ctx.config.s3).withShard(name, (dir) =>
    writeShardFiles(state.records, {
      outDir: dir,
      name,
      images: { get: (ref) => ctx.staging.getBlob(ref) },
      startTime: Date.now() - spent,
      timings: state.timings,
      columns: ctx.columns,
    }),
  );
}
