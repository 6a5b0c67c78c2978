import type { Command } from 'commander';
import { COMMON_FLAGS, addConfigFlags, loadFromFlags } from '../config/cli.ts';
import { STAGE_ORDER } from '../core/shard.ts';

/** `capfilt status [runId]`: runs and their progress from Redis; `--json` for machines. */
export function register(program: Command): void {
  const cmd = program.command('status').description('progress of runs (rows done, kept/filtered/failed, in flight, queue depths) from Redis').argument('[runId]', 'one run (default: the most recent runs)');
  addConfigFlags(cmd, COMMON_FLAGS)
    .option('--limit <n>', 'runs to list', '10')
    .option('--json', 'one JSON object')
    .action(async (runIdArg: string | undefined, flags: Record<string, unknown>) => {
      const { config } = loadFromFlags(flags, COMMON_FLAGS);
      const [{ listRuns, RunState }, { openRedis, redisReachable, redisUnavailable }, { StageQueues }] = await Promise.all([
        import('../pipeline/run-state.ts'), import('../workers/connection.ts'), import('../workers/queues.ts'),
      ]);
      if (!(await redisReachable(config.redis.url))) throw redisUnavailable(config.redis.url, 'status reads run state from the deployment\'s Redis: set REDIS_URL / --redis-url.');
      const redis = openRedis(config.redis.url);
      const queues = new StageQueues(config.redis.url, config.redis.prefix);
      try {
        const ids = runIdArg ? [runIdArg] : await listRuns(redis, config.redis.prefix, Number(flags.limit) || 10);
        const runs = [];
        for (const id of ids) {
          const st = new RunState(redis, config.redis.prefix, id);
          const meta = await st.meta();
          if (!meta) continue;
          runs.push({ ...meta, totals: await st.totals(), inFlight: await st.inFlight(), failedShards: await st.failedShards() });
        }
        for (const s of STAGE_ORDER) queues.get(s);
        const depth = await queues.counts();
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ prefix: config.redis.prefix, queues: depth, runs })}\n`);
          return;
        }
        if (!runs.length) process.stdout.write(runIdArg ? `no run ${runIdArg} under prefix ${config.redis.prefix}\n` : `no runs under prefix ${config.redis.prefix}\n`);
        for (const r of runs) {
          const pct = r.totalRows ? ((100 * r.totals.rows) / r.totalRows).toFixed(1) : '0.0';
          const kept = r.totals.rows ? ((100 * r.totals.kept) / r.totals.rows).toFixed(1) : '0.0';
          const elapsed = ((r.finishedAt ?? Date.now()) - r.startedAt) / 1000;
          process.stdout.write(
            `${r.runId}  ${r.status.padEnd(11)} ${r.totals.rows}/${r.totalRows} rows (${pct}%)  kept ${r.totals.kept} (${kept}%)  filtered ${r.totals.filtered}  failed ${r.totals.failed}  ` +
            `shards ${r.totals.shards}/${r.totalShards}  in flight ${r.inFlight}  ${elapsed.toFixed(0)} s  ${r.out}\n`,
          );
          for (const [shard, err] of Object.entries(r.failedShards)) process.stdout.write(`    failed shard ${shard}: ${err}\n`);
        }
        process.stdout.write(`queues: ${Object.entries(depth).map(([q, c]) => `${q} wait ${c.wait + (c.prioritized ?? 0)} active ${c.active} delayed ${c.delayed} failed ${c.failed}`).join(' | ')}\n`);
      } finally {
        await queues.close();
        redis.disconnect();
      }
    });
}
