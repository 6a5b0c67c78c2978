import type { Logger } from 'pino';
import type { CapfiltConfig } from '../config/schema.ts';
import { CapfiltError } from '../core/errors.ts';
import type { DuplicateIndex } from '../io/duplicates.ts';
import type { TopFractionSketch } from '../pipeline/top-fraction.ts';
import type { RoleRuntime, RuntimeSetting } from '../models/runtime/precision.ts';
import { STAGE_TABLE, checkTable, configFor, outputColumns, stageDef, type RoleModels, type RoleName, type StageImpl, type StageTable } from '../pipeline/stages/table.ts';
import type { StageFn } from './processor.ts';
import { ModelCache } from './models.ts';

/**
 * Binds each stage of a stage table to what it needs in this process: its config sections, the
 * model of its role from the process's model cache (loaded once), the run's duplicate index, its
 * CLIP-score histogram and the table's parquet columns. Stage implementations load on first use (the table's `load`), so a
 * worker that serves only caption/filter never imports the downloader and vice versa. The
 * workers' processors and `capfilt retry-failed` both run stages through this registry.
 */
export interface StageRegistryOptions {
  /** The models config's device/threads/precision (auto resolves per role), or options per role. */
  runtime: RuntimeSetting | RoleRuntime;
  log: Logger;
  /** The stages this process can run (default: the built-in table). */
  table?: StageTable;
  /** The run's exact-duplicate index (workers: one in Redis shared by every host); null: per process. */
  duplicateIndex?(runId: string): DuplicateIndex | null;
  /** The run's CLIP-score histogram for clip.topFraction (workers: one in Redis shared by every host); null: per process. */
  topFractionSketch?(runId: string): TopFractionSketch | null;
}

/** How many models the stages `stages` of `table` run (one per role; a process serving several runs them at once). */
export function modelsServed(stages: readonly string[], table: StageTable = STAGE_TABLE): number {
  return new Set(stages.map((s) => stageDef(s, table).role).filter((r) => r !== null)).size;
}

function clipDir(c: CapfiltConfig['models']): string {
  if (!c.clip) throw new CapfiltError('CONFIG_INVALID', 'the clip stage needs a CLIP model folder (models.clip, --clip-model)');
  return c.clip;
}

/** Where each role's model comes from: the config option naming its folder, and its run.json key. */
const ROLES: { [R in RoleName]: { load(m: ModelCache, c: CapfiltConfig['models']): Promise<RoleModels[R]>; info(m: ModelCache, c: CapfiltConfig['models']): Promise<Record<string, unknown> | null>; key: string } } = {
  captioner: { load: (m, c) => m.captioner(c.captioner), info: (m, c) => m.info(c.captioner, 'captioner'), key: 'captioner' },
  imageTextScorer: { load: (m, c) => m.filter(c.filter), info: (m, c) => m.info(c.filter, 'filter'), key: 'filter' },
  embedder: { load: (m, c) => m.embedder(clipDir(c)), info: (m, c) => (c.clip ? m.info(c.clip, 'embedder') : Promise.resolve(null)), key: 'clip' },
};

export class StageRegistry {
  private readonly models: ModelCache;
  readonly table: StageTable;
  private readonly impls = new Map<string, Promise<StageImpl>>();

  constructor(private readonly o: StageRegistryOptions) {
    this.table = o.table ?? STAGE_TABLE;
    checkTable(this.table);
    this.models = new ModelCache(o.runtime, o.log);
  }

  private impl(name: string): Promise<StageImpl> {
    let p = this.impls.get(name);
    if (!p) {
      p = stageDef(name, this.table).load();
      p.catch(() => this.impls.delete(name));
      this.impls.set(name, p);
    }
    return p;
  }

  /** The stage bound for a run's config: loads its implementation and its role's model. */
  async get(stage: string, config: CapfiltConfig): Promise<StageFn> {
    const def = stageDef(stage, this.table);
    const model = def.role ? await ROLES[def.role].load(this.models, config.models) : undefined;
    const impl = await this.impl(stage);
    const columns = outputColumns(this.table);
    const sections = configFor(def, config);
    return async (state, ctx) => {
      await impl.run(state, {
        config: sections,
        staging: ctx.staging,
        log: ctx.log,
        signal: ctx.signal,
        columns,
        duplicateIndex: this.o.duplicateIndex?.(state.shard.runId) ?? null,
        topFractionSketch: this.o.topFractionSketch?.(state.shard.runId) ?? null,
        ...(model ? { model } : {}),
      } as Parameters<StageImpl['run']>[1]);
    };
  }

  /** Model ids and hashes for run.json, by role (`captioner`, `filter`), of the given stages' roles. */
  async modelInfo(config: CapfiltConfig, stages: readonly string[]): Promise<Record<string, unknown> | null> {
    const out: Record<string, unknown> = {};
    for (const s of stages) {
      const role = stageDef(s, this.table).role;
      if (role) out[ROLES[role].key] = await ROLES[role].info(this.models, config.models);
    }
    return Object.keys(out).length ? out : null;
  }

  async close(): Promise<void> {
    for (const p of this.impls.values()) {
      const impl = await p.catch(() => null);
      await impl?.close?.();
    }
    this.impls.clear();
    await this.models.close();
  }
}
