import type { Logger } from 'pino';
import type { CapfiltConfig } from '../config/schema.ts';
import type { RuntimeOptions } from '../models/blip/types.ts';
import type { StageName } from '../pipeline/stages/types.ts';
import type { StageFn } from './processor.ts';
import { ModelCache } from './models.ts';

/**
 * Binds each stage's logic to the resources it needs in this process: the model stages get the
 * process's model cache (loaded once); the I/O stages are loaded on first use, so a worker that
 * serves only caption/filter never imports the downloader and vice versa.
 */
export class StageRegistry {
  private readonly models: ModelCache;

  constructor(runtime: RuntimeOptions, log: Logger) {
    this.models = new ModelCache(runtime, log);
  }

  async get(stage: StageName, config: CapfiltConfig): Promise<StageFn> {
    switch (stage) {
      case 'download': {
        const { downloadShard } = await import('../pipeline/stages/download.ts');
        return (state, ctx) => downloadShard(state, ctx);
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
        return (state, ctx) => writeShard(state, ctx);
      }
    }
  }

  modelInfo(config: CapfiltConfig) {
    return Promise.all([this.models.info(config.models.captioner), this.models.info(config.models.filter)]);
  }

  close(): Promise<void> {
    return this.models.close();
  }
}
