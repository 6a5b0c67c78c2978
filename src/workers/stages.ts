import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { RedisDuplicateIndex } from '../io/duplicates.ts';
import type { CapfiltConfig } from '../config/schema.ts';
import type { RuntimeOptions } from '../models/runtime/types.ts';
import type { StageName } from '../core/shard.ts';
import type { StageFn } from './processor.ts';
import { ModelCache } from './models.ts';

/**
 * Binds each stage's logic to the resources it needs in this process: the model stages get the
 * process's model cache (loaded once); the I/O stages are loaded on first use, so a worker that
 * serves only caption/filter never imports the downloader and vice versa.
 */
export class StageRegistry {
  private readonly models: ModelCache;

  private downloadLoaded = false;

  constructor(
    runtime: RuntimeOptions,
    log: Logger,
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    this.models = new ModelCache(runtime, log);
  }

  async get(stage: StageName, config: CapfiltConfig): Promise<StageFn> {
    switch (stage) {
      case 'download': {
        const { downloadShard } = await import('../pipeline/stages/download.ts');
        this.downloadLoaded = true;
        // Duplicates are detected run-wide, across every worker host, through the run's Redis.
        return (state, ctx) => downloadShard(state, { ...ctx, duplicateIndex: new RedisDuplicateIndex(this.redis, `${this.prefix}:run:${state.shard.runId}:dup`) });
      }
      case 'caption': {
        const captioner = await this.models.captioner(config.models.captioner);
        const { captionShard } = await import('../pipeline/stages/caption.ts');
        return (state, ctx) => captionShard(state, { ...ctx, captioner });
      }
      case 'filter': {
        const filter = await this.models.filter(config.models.filter);
        const { filterShard } = await import('../pipeline/stages/filter.ts');
        return (state, ctx) => filterShard(state, { ...ctx, filter });
      }
      case 'write': {
        const { writeShard } = await import('../pipeline/stages/write.ts');
        return async (state, ctx) => {
          await writeShard(state, ctx);
        };
      }
    }
  }

  modelInfo(config: CapfiltConfig, role: 'captioner' | 'filter') {
    return this.models.info(role === 'captioner' ? config.models.captioner : config.models.filter, role);
  }

  async close(): Promise<void> {
    if (this.downloadLoaded) await (await import('../pipeline/stages/download.ts')).closeDownloadResources();
    await this.models.close();
  }
}
