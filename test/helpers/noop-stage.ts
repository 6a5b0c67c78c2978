import { setScore } from '../../src/core/records.ts';
import type { ShardState } from '../../src/core/shard.ts';
import type { StageRunContext } from '../../src/pipeline/stages/types.ts';

/**
 * A stage that changes no decision: it gives every scored text of the shard a `noop` score
 * of 0 and records how many texts it saw in the log. Tests register it with `withStage` to show
 * that a new filter kind is one stage file (this) and one table entry.
 */
export async function noopShard(state: ShardState, ctx: StageRunContext<'filter'>): Promise<void> {
  let texts = 0;
  for (const r of state.records) {
    for (const t of r.scores) {
      setScore(t, 'noop', 0);
      texts++;
    }
  }
  ctx.log.debug({ texts, itmThreshold: ctx.config.filter.itmThreshold }, 'noop stage');
}
