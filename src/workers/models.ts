import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { CapfiltError } from '../core/errors.ts';
import { openThreaded } from '../models/families.ts';
import type { Captioner, ImageTextEmbedder, ImageTextScorer } from '../models/roles.ts';
import type { InferenceThread } from '../models/runtime/inference/client.ts';
import { runtimeFromConfig, type ModelRole, type RoleRuntime, type RuntimeSetting } from '../models/runtime/precision.ts';
import { processMetrics } from '../telemetry/metrics.ts';

/**
 * Models are loaded once per worker process, on first use, and shared by every job and run that
 * names the same folder. Loading is memoised as a promise so that concurrent jobs wait for one
 * load instead of starting several. Each folder's models run in their own inference thread
 * (models/runtime/inference): onnxruntime-node runs graphs synchronously, which on the main
 * thread would block BullMQ's lock renewal for the length of a batch. Role calls are timed here,
 * as the stage sees them (queueing in the thread included), for the worker's /metrics.
 */
export class ModelCache {
  private readonly loads = new Map<string, Promise<InferenceThread>>();
  /** One embedder per folder, so per-model caches keyed by it (zero-shot class embeddings) hold across jobs. */
  private readonly embedders = new Map<string, Promise<ImageTextEmbedder>>();

  private readonly runtime: RoleRuntime;

  /** `runtime`: the models config's options (precision auto resolves per role), or options per role. */
  constructor(
    runtime: RuntimeSetting | RoleRuntime,
    private readonly log: Logger,
  ) {
    this.runtime = typeof runtime === 'function' ? runtime : runtimeFromConfig(runtime);
  }

  private load(dir: string, role: ModelRole): Promise<InferenceThread> {
    const opts = this.runtime(role);
    const path = resolve(dir);
    const key = `${path}\n${opts.precision}`;
    let p = this.loads.get(key);
    if (!p) {
      const t0 = performance.now();
      p = openThreaded(path, opts).then((m) => {
        this.log.info({ dir: path, roles: Object.keys(m.roles), ms: Math.round(performance.now() - t0), device: opts.device, precision: opts.precision, threads: opts.threads, spinning: opts.spinning ?? true }, 'models loaded');
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
    const c = (await this.load(this.roleDir(dir, 'captioner'), 'captioner')).role<Captioner>('captioner');
    if (!c) throw new CapfiltError('MODEL_DIR_INVALID', `models.captioner ${dir} holds no captioner (BlipForConditionalGeneration)`, { dir });
    const metrics = processMetrics();
    return { caption: (images, options) => metrics.timeModel('captioner', 'caption', () => c.caption(images, options)), close: () => c.close() };
  }

  async filter(dir: string): Promise<ImageTextScorer> {
    const f = (await this.load(this.roleDir(dir, 'filter'), 'filter')).role<ImageTextScorer>('imageTextScorer');
    if (!f) throw new CapfiltError('MODEL_DIR_INVALID', `models.filter ${dir} holds no filter (BlipForImageTextRetrieval)`, { dir });
    const metrics = processMetrics();
    return { score: (items) => metrics.timeModel('filter', 'score', () => f.score(items)), close: () => f.close() };
  }

  embedder(dir: string): Promise<ImageTextEmbedder> {
    const key = resolve(dir);
    let p = this.embedders.get(key);
    if (!p) {
      p = this.openEmbedder(dir);
      p.catch(() => this.embedders.delete(key));
      this.embedders.set(key, p);
    }
    return p;
  }

  private async openEmbedder(dir: string): Promise<ImageTextEmbedder> {
    const e = (await this.load(dir, 'embedder')).role<ImageTextEmbedder>('embedder');
    if (!e) throw new CapfiltError('MODEL_DIR_INVALID', `${dir} holds no image-text embedder (CLIPModel)`, { dir });
    const metrics = processMetrics();
    return {
      dim: e.dim,
      logitScale: e.logitScale,
      embedImages: (images) => metrics.timeModel('embedder', 'embed_images', () => e.embedImages(images)),
      embedTexts: (texts) => metrics.timeModel('embedder', 'embed_texts', () => e.embedTexts(texts)),
      close: () => e.close(),
    };
  }

  /** run.json's record of the model serving `role` (BLIP folders report per role). */
  async info(dir: string, role: 'captioner' | 'filter' | 'embedder'): Promise<Record<string, unknown> | null> {
    const info = (await this.load(role === 'embedder' ? dir : this.roleDir(dir, role), role)).info;
    return role === 'embedder' ? info : ((info[role] as Record<string, unknown> | null | undefined) ?? null);
  }

  async close(): Promise<void> {
    const all = await Promise.allSettled(this.loads.values());
    this.loads.clear();
    this.embedders.clear();
    for (const r of all) if (r.status === 'fulfilled') await r.value.close();
  }
}
