import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { BlipModels } from '../models/blip/types.ts';
import type { Captioner, ImageTextScorer } from '../models/roles.ts';
import type { RuntimeOptions } from '../models/runtime/types.ts';
import { CapfiltError } from '../core/errors.ts';
import { openThreadedBlip } from './inference/client.ts';

/**
 * Models are loaded once per worker process, on first use, and shared by every job and run that
 * names the same folder. Loading is memoised as a promise so that concurrent jobs wait for one
 * load instead of starting several. Each folder's models run in their own inference thread
 * (inference/client.ts): onnxruntime-node runs graphs synchronously, which on the main thread
 * would block BullMQ's lock renewal for the length of a batch.
 */
export class ModelCache {
  private readonly loads = new Map<string, Promise<BlipModels>>();

  constructor(
    private readonly runtime: RuntimeOptions,
    private readonly log: Logger,
  ) {}

  private load(dir: string): Promise<BlipModels> {
    const key = resolve(dir);
    let p = this.loads.get(key);
    if (!p) {
      const t0 = performance.now();
      p = openThreadedBlip(key, this.runtime).then((m) => {
        this.log.info({ dir: key, ms: Math.round(performance.now() - t0), device: this.runtime.device }, 'models loaded');
        return m;
      });
      p.catch(() => this.loads.delete(key));
      this.loads.set(key, p);
    }
    return p;
  }

  /**
   * A folder holding captioner/ and filter/ is split by role, so that each role gets its own
   * thread (caption and filter batches of different shards overlap on a multi-core or GPU host)
   * and a worker serving one role loads only that model.
   */
  private roleDir(dir: string, role: 'captioner' | 'filter'): string {
    return existsSync(join(dir, role, 'config.json')) ? join(dir, role) : dir;
  }

  async captioner(dir: string): Promise<Captioner> {
    const m = await this.load(this.roleDir(dir, 'captioner'));
    if (!m.captioner) throw new CapfiltError('MODEL_DIR_INVALID', `models.captioner ${dir} holds no captioner (BlipForConditionalGeneration)`, { dir });
    return m.captioner;
  }

  async filter(dir: string): Promise<ImageTextScorer> {
    const m = await this.load(this.roleDir(dir, 'filter'));
    if (!m.filter) throw new CapfiltError('MODEL_DIR_INVALID', `models.filter ${dir} holds no filter (BlipForImageTextRetrieval)`, { dir });
    return m.filter;
  }

  async info(dir: string, role: 'captioner' | 'filter'): Promise<Record<string, unknown> | null> {
    return (await this.load(this.roleDir(dir, role))).info[role];
  }

  async close(): Promise<void> {
    const all = await Promise.allSettled(this.loads.values());
    this.loads.clear();
    for (const r of all) {
      if (r.status !== 'fulfilled') continue;
      await r.value.captioner?.close();
      await r.value.filter?.close();
    }
  }
}
