import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import type { RedisClient } from '../core/redis.ts';
import { STAGES, type RunMeta } from '../telemetry/stats-schema.ts';

/**
 * The BullMQ side of the dashboard: queue depth per stage (read-only `getJobCounts`) and
 * bull-board at /queues. Queues are the stage names under the deployment prefix, plus any
 * queue a registered run names in its meta (`queues: {stage: queueName}`); new ones are added
 * to bull-board as runs appear, so starting the dashboard before the first run works.
 */
export type JobCounts = Record<'waiting' | 'active' | 'delayed' | 'failed' | 'completed' | 'prioritized' | 'waiting-children', number>;

export interface StageQueue {
  stage: string;
  queue: string;
  counts: JobCounts;
}

const STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children'] as const;

export class QueueWatcher {
  private readonly queues = new Map<string, { stage: string; queue: Queue }>();
  private board: ReturnType<typeof createBullBoard> | null = null;

  /** `nameOf`: a stage's queue name in this deployment (hash-tagged on a Redis Cluster). */
  constructor(private readonly redis: RedisClient, private readonly prefix: string, private readonly readOnly: boolean, nameOf: (stage: string) => string = (s) => s) {
    for (const stage of STAGES) this.ensure(stage, nameOf(stage));
  }

  /** Mounts bull-board at /queues; read-only mode hides retry, clean, promote and delete. */
  async mount(app: FastifyInstance): Promise<void> {
    const serverAdapter = new FastifyAdapter();
    serverAdapter.setBasePath('/queues');
    this.board = createBullBoard({
      queues: [...this.queues.values()].map(({ queue }) => this.adapter(queue)),
      serverAdapter,
      options: { uiConfig: { boardTitle: 'capfilt queues' } },
    });
    await app.register(serverAdapter.registerPlugin(), { prefix: '/queues' });
  }

  /** Adds the queues a run names (idempotent). */
  addFromRuns(runs: readonly RunMeta[]): void {
    for (const r of runs) {
      const prefix = r.queuePrefix ?? this.prefix;
      if (prefix !== this.prefix) continue;
      for (const [stage, name] of Object.entries(r.queues)) this.ensure(stage, name);
    }
  }

  async depths(): Promise<StageQueue[]> {
    const entries = [...this.queues.entries()];
    const counts = await Promise.all(entries.map(([, { queue }]) => queue.getJobCounts(...STATES).catch(() => null)));
    return entries.map(([name, { stage }], i) => ({
      stage,
      queue: name,
      counts: Object.fromEntries(STATES.map((s) => [s, counts[i]?.[s] ?? 0])) as JobCounts,
    }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map(({ queue }) => queue.close()));
  }

  private ensure(stage: string, name: string): void {
    if (this.queues.has(name)) return;
    // The shared connection is a plain (non-blocking) client; a Queue accepts that.
    const queue = new Queue(name, { connection: this.redis, prefix: this.prefix });
    this.queues.set(name, { stage, queue });
    this.board?.addQueue(this.adapter(queue));
  }

  private adapter(queue: Queue): BullMQAdapter {
    return new BullMQAdapter(queue, { readOnlyMode: this.readOnly, allowRetries: !this.readOnly, displayName: queue.name });
  }
}
