import type { CapfiltConfig } from '../../config/schema.ts';
import { CapfiltError } from '../../core/errors.ts';
import type { ScoreName } from '../../core/records.ts';
import { STAGE_ORDER, type ShardState } from '../../core/shard.ts';
import type { Captioner, ImageTextEmbedder, ImageTextScorer } from '../../models/roles.ts';
import { CAPTION_COLUMNS, CLIP_TOP_COLUMNS, LABEL_COLUMNS, FETCH_COLUMNS, IMAGE_COLUMNS, NEAR_DUPLICATE_COLUMNS, perTextScoreColumn, scoredTextColumns, webScoreColumn, type OutputColumn } from '../../io/writers/columns.ts';
import type { ConfigSection, StageRunContext } from './types.ts';

/**
 * The stage table: the one description of each pipeline stage. An entry names the stage, the
 * config sections it receives (`config[section]`, nothing else), the model role it needs (the
 * worker host supplies it from its model cache), the scores it adds to each ScoredText, the
 * parquet columns it contributes, and where its implementation is (loaded on first use, so a
 * worker that serves only caption/filter never imports the downloader and vice versa).
 *
 * Derived from it: the worker stage registry (src/workers/stages.ts), the in-process chain of
 * `capfilt retry-failed`, the parquet layout (`outputColumns`), the CLI's --stages help, and,
 * through the names tuple STAGE_ORDER that the type below pins it to, the stage enum and
 * per-stage concurrency of the config schema, the shard state types and the stats layout.
 *
 * A new stage is a stage file plus an entry here (and its name in STAGE_ORDER, with a
 * `pipeline.concurrency` default, for a built-in one); `withStage` adds one to a table without
 * touching this file (a plugin, a test).
 */
export interface RoleModels {
  captioner: Captioner;
  imageTextScorer: ImageTextScorer;
  embedder: ImageTextEmbedder;
}
export type RoleName = keyof RoleModels;

/** The model a stage of role R receives as `ctx.model`. */
export type ModelOf<R extends RoleName | null> = R extends RoleName ? { model: RoleModels[R] } : unknown;

export interface StageImpl<S extends ConfigSection = ConfigSection, R extends RoleName | null = RoleName | null> {
  run(state: ShardState, ctx: StageRunContext<S> & ModelOf<R>): Promise<unknown>;
  /** Releases what the stage holds per process (connection pools); called when the worker stops. */
  close?(): Promise<void>;
}

export interface StageDef<N extends string = string, S extends ConfigSection = ConfigSection, R extends RoleName | null = RoleName | null> {
  name: N;
  /** Config sections the stage reads; it receives exactly these. */
  config: readonly S[];
  role: R;
  /** Score names the stage adds to each scored text. */
  scores: readonly string[];
  /** Parquet columns the stage contributes, written for every row of every shard. */
  columns: readonly OutputColumn[];
  load(): Promise<StageImpl<S, R>>;
}

export type StageTable = readonly StageDef[];

export function defineStage<N extends string, S extends ConfigSection, R extends RoleName | null>(def: StageDef<N, S, R>): StageDef<N, S, R> {
  return def;
}

/** Both columns of one score: per text (`score_<name>`) and the web text's (`web_<name>`). */
export function scoreColumns(name: string): OutputColumn[] {
  return [perTextScoreColumn(name), webScoreColumn(name)];
}

const FILTER_SCORES = ['itm', 'itc'] as const satisfies readonly ScoreName[];

/** One entry per name of STAGE_ORDER, in that order (checked by the compiler). */
type TableFor<Names extends readonly string[]> = { readonly [I in keyof Names]: StageDef<Names[I] & string, any, any> };

const downloadStage = defineStage({
  name: 'download',
  config: ['download', 'image'],
  role: null,
  scores: [],
  columns: [...IMAGE_COLUMNS, ...FETCH_COLUMNS],
  load: async () => {
    const m = await import('./download.ts');
    return { run: m.downloadShard, close: m.closeDownloadResources };
  },
});

const captionStage = defineStage({
  name: 'caption',
  config: ['caption'],
  role: 'captioner',
  scores: [],
  columns: CAPTION_COLUMNS,
  load: async () => ({ run: (await import('./caption.ts')).captionShard }),
});

const filterStage = defineStage({
  name: 'filter',
  // caption.keepTop: "generate K, keep the top M by ITC" is decided among the filter's scores.
  config: ['filter', 'caption'],
  role: 'imageTextScorer',
  scores: FILTER_SCORES,
  columns: scoredTextColumns(FILTER_SCORES),
  load: async () => ({ run: (await import('./filter.ts')).filterShard }),
});

const clipStage = defineStage({
  name: 'clip',
  // filter + caption: the decision is taken again with every rule (BLIP's and CLIP's) and keep-top.
  config: ['clip', 'filter', 'caption'],
  role: 'embedder',
  scores: ['clip'],
  // near_duplicate_*: filled by `capfilt dedup` from the embeddings this stage saves.
  columns: [...scoreColumns('clip'), ...LABEL_COLUMNS, ...CLIP_TOP_COLUMNS, ...NEAR_DUPLICATE_COLUMNS],
  load: async () => ({ run: (await import('./clip.ts')).clipShard }),
});

const writeStage = defineStage({
  name: 'write',
  config: ['output', 's3'],
  role: null,
  scores: [],
  columns: [],
  load: async () => ({ run: (await import('./write.ts')).writeShard }),
});

export const STAGE_TABLE = [downloadStage, captionStage, filterStage, clipStage, writeStage] as const satisfies TableFor<typeof STAGE_ORDER>;

export function stageNames(table: StageTable = STAGE_TABLE): string[] {
  return table.map((s) => s.name);
}

export function stageDef(name: string, table: StageTable = STAGE_TABLE): StageDef {
  const def = table.find((s) => s.name === name);
  if (!def) throw new CapfiltError('CONFIG_INVALID', `unknown stage "${name}" (stages: ${stageNames(table).join(', ')})`, { stage: name });
  return def;
}

/** The parquet's stage columns: every stage's, in table order (whatever stages a run uses, every shard has them all). */
export function outputColumns(table: StageTable = STAGE_TABLE): OutputColumn[] {
  return table.flatMap((s) => s.columns);
}

/** The score names of the table's stages, in table order. */
export function scoreNames(table: StageTable = STAGE_TABLE): string[] {
  return table.flatMap((s) => s.scores);
}

/** "download, caption (captioner), filter (imageTextScorer), write", for help texts. */
export function describeStages(table: StageTable = STAGE_TABLE): string {
  return table.map((s) => (s.role ? `${s.name} (${s.role})` : s.name)).join(', ');
}

/** The config with only the sections a stage declared. */
export function configFor<S extends ConfigSection>(def: Pick<StageDef<string, S>, 'config'>, config: CapfiltConfig): Pick<CapfiltConfig, S> {
  return Object.fromEntries(def.config.map((k) => [k, config[k]])) as Pick<CapfiltConfig, S>;
}

const RESERVED_SCORES = new Set(['text', 'source', 'kept']);

/**
 * Checks a table: unique stage, score and column names; every declared score has its
 * `score_<name>` and `web_<name>` columns; download first and write last (every run downloads its
 * rows and writes its shards). Throws a plain Error: a bad table is a programming error.
 */
export function checkTable(table: StageTable): void {
  const names = stageNames(table);
  const scores = scoreNames(table);
  const columns = outputColumns(table).map((c) => c.name);
  const dup = (xs: string[]) => xs.find((x, i) => xs.indexOf(x) !== i);
  const problems = [
    dup(names) && `stage ${dup(names)} is listed twice`,
    dup(scores) && `score ${dup(scores)} is declared twice`,
    dup(columns) && `column ${dup(columns)} is contributed twice`,
    names[0] !== 'download' && 'the first stage must be download',
    names[names.length - 1] !== 'write' && 'the last stage must be write',
    ...names.filter((n) => !/^[a-z][a-z0-9-]*$/.test(n)).map((n) => `stage name "${n}" is not lowercase letters, digits and "-"`),
    ...scores.filter((s) => RESERVED_SCORES.has(s) || !/^[a-z][a-z0-9_]*$/.test(s)).map((s) => `score name "${s}" is reserved or not lowercase snake case`),
    ...scores.flatMap((s) => [`score_${s}`, `web_${s}`].filter((c) => !columns.includes(c)).map((c) => `score ${s} has no ${c} column`)),
  ].filter((p): p is string => typeof p === 'string');
  if (problems.length) throw new Error(`stage table: ${problems.join('; ')}`);
}

/**
 * A table with one more stage, placed after `after` (a plugin, or a test's no-op stage). The
 * stage's scores and columns join the parquet of every shard the chain writes.
 */
export function withStage(table: StageTable, def: StageDef<string, any, any>, o: { after: string }): StageTable {
  const i = table.findIndex((s) => s.name === o.after);
  if (i < 0) throw new Error(`stage table: no stage ${o.after} to add ${def.name} after`);
  const out = [...table.slice(0, i + 1), def, ...table.slice(i + 1)];
  checkTable(out);
  return out;
}

/**
 * Checks a run's stage list against a table: every name known, in table order, no repeats,
 * download and write included (the config schema checks the same for the built-in names; this
 * covers a table with more stages).
 */
export function checkChain(stages: readonly string[], table: StageTable = STAGE_TABLE): void {
  const known = stageNames(table);
  const bad = stages.filter((s) => !known.includes(s));
  const order = stages.map((s) => known.indexOf(s));
  const problem = bad.length
    ? `unknown stage${bad.length > 1 ? 's' : ''} ${bad.join(', ')}`
    : !stages.includes('download') || !stages.includes('write')
      ? 'the list must include "download" and "write"'
      : order.some((v, i) => i > 0 && v <= order[i - 1])
        ? 'the stages must be in pipeline order without repeats'
        : null;
  if (problem) throw new CapfiltError('CONFIG_INVALID', `option pipeline.stages: ${problem} (stages: ${known.join(',')}; got ${stages.join(',')})`, { stages });
}
