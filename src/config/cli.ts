import type { Command } from 'commander';
import { STAGE_ORDER } from '../core/shard.ts';
import { loadConfig, parseSetArgs, type LoadedConfig, type Override } from './load.ts';

/**
 * Command-line flags that map onto config options. Each command adds the flags it needs; the
 * values become overrides (the top layer of the merge) named after the flag in error messages.
 */
export interface FlagSpec {
  flag: string;
  path: string;
  help: string;
}

export const COMMON_FLAGS: FlagSpec[] = [
  { flag: '--redis-url <url>', path: 'redis.url', help: 'Redis URL (default REDIS_URL or redis://127.0.0.1:6379)' },
  { flag: '--prefix <prefix>', path: 'redis.prefix', help: 'deployment key prefix for queues and run keys' },
];

export const RUN_FLAGS: FlagSpec[] = [
  { flag: '--input <path>', path: 'input.path', help: 'input file or folder (parquet, csv, tsv, jsonl, txt), or s3://bucket/prefix/' },
  { flag: '--out <dir>', path: 'output.dir', help: 'output folder, or s3://bucket/prefix/' },
  { flag: '--s3-endpoint <url>', path: 's3.endpoint', help: 'S3-compatible server (MinIO, Ceph, R2), default AWS_ENDPOINT_URL or AWS' },
  { flag: '--input-format <format>', path: 'input.format', help: 'auto, parquet, csv, tsv, jsonl, txt' },
  { flag: '--url-col <name>', path: 'input.urlCol', help: 'column with the image URL' },
  { flag: '--caption-col <name>', path: 'input.captionCol', help: 'column with the web text' },
  { flag: '--save-additional-columns <list>', path: 'input.saveAdditionalColumns', help: 'comma-separated extra columns to keep' },
  { flag: '--allow-empty', path: 'input.allowEmpty', help: 'run an input without rows (a warning instead of INPUT_EMPTY)' },
  { flag: '--trusted', path: 'input.trusted', help: 'the input is human-annotated: merge it unfiltered' },
  { flag: '--shard-rows <n>', path: 'shards.rows', help: 'rows per shard' },
  { flag: '--stages <list>', path: 'pipeline.stages', help: `stages of this run in order, from ${STAGE_ORDER.join(',')} (download and write always)` },
  { flag: '--max-in-flight <n>', path: 'pipeline.maxInFlightShards', help: 'shards between planning and written output' },
  { flag: '--staging <backend>', path: 'staging.backend', help: 'fs, redis or s3' },
  { flag: '--staging-dir <dir>', path: 'staging.dir', help: 'folder of the fs staging store, or s3:// prefix of the s3 one' },
  { flag: '--captioner <dir>', path: 'models.captioner', help: 'captioner model folder' },
  { flag: '--filter-model <dir>', path: 'models.filter', help: 'filter model folder' },
  { flag: '--clip-model <dir>', path: 'models.clip', help: 'CLIP model folder for the clip stage' },
  { flag: '--clip-min-score <s>', path: 'clip.minScore', help: 'keep texts with CLIP score (cosine) >= this, e.g. 0.28 (LAION)' },
  { flag: '--clip-top-fraction <f>', path: 'clip.topFraction', help: 'keep texts whose CLIP score is in the run\'s top fraction f, e.g. 0.3 (DataComp)' },
  { flag: '--save-embeddings', path: 'clip.saveEmbeddings', help: 'write the kept rows\' CLIP embeddings (clip-retrieval layout, embeddings/)' },
  { flag: '--labels <file>', path: 'clip.labels', help: 'zero-shot labels per row from these class names (one per line)' },
  { flag: '--templates <set>', path: 'clip.templates', help: 'prompt templates for --labels: simple, imagenet or a file' },
  { flag: '--label-min-prob <p>', path: 'clip.labelMinProb', help: 'record only labels at least this probable' },
  { flag: '--select-by <score>', path: 'caption.selectBy', help: 'score ranking synthetic captions for --keep-top: itc, itm or clip' },
  { flag: '--k <n>', path: 'caption.k', help: 'synthetic captions per image' },
  { flag: '--keep-top <m>', path: 'caption.keepTop', help: 'keep the best M synthetic captions (by --select-by, default ITC)' },
  { flag: '--method <method>', path: 'caption.method', help: 'nucleus, beam or greedy' },
  { flag: '--itm <threshold>', path: 'filter.itmThreshold', help: 'keep texts with ITM P(match) >= this' },
  { flag: '--itc <threshold>', path: 'filter.itcThreshold', help: 'also require ITC cosine >= this' },
  { flag: '--selection <policy>', path: 'filter.selection', help: 'original-first, best-scoring, synthetic-first' },
];

export const WORKER_FLAGS: FlagSpec[] = [
  { flag: '--device <device>', path: 'models.device', help: 'cpu or cuda:N' },
  { flag: '--threads <n>', path: 'models.threads', help: 'CPU intra-op threads (0: ORT default)' },
  { flag: '--precision <p>', path: 'models.precision', help: 'auto (int8 on cpu, fp32 on cuda), fp32, fp16 or int8' },
  { flag: '--spinning <mode>', path: 'models.spinning', help: 'ORT CPU threads spin-wait: auto (only where one model stage runs), on or off' },
];

function camel(flag: string): string {
  const name = flag.replace(/^--/, '').split(' ')[0];
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function addConfigFlags(cmd: Command, specs: FlagSpec[]): Command {
  for (const s of specs) cmd.option(s.flag, `${s.help} (${s.path})`);
  return cmd
    .option('--config <file>', 'YAML/JSON config file merged over config/default.yaml (default: env CAPFILT_CONFIG)')
    .option('--set <option=value>', 'set any option, e.g. --set filter.itmThreshold=0.6 (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[]);
}

export function loadFromFlags(flags: Record<string, unknown>, specs: FlagSpec[], extra: Override[] = []): LoadedConfig {
  const overrides: Override[] = [];
  for (const s of specs) {
    const v = flags[camel(s.flag)];
    if (v !== undefined) overrides.push({ path: s.path, value: typeof v === 'boolean' ? v : String(v), source: s.flag.split(' ')[0] });
  }
  overrides.push(...extra, ...parseSetArgs((flags.set as string[] | undefined) ?? []));
  return loadConfig({ file: (flags.config as string | undefined) ?? process.env.CAPFILT_CONFIG ?? null, env: process.env, overrides });
}
