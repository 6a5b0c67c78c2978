import { constants } from 'node:fs';
import { access, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CapfiltConfig } from '../config/schema.ts';
import { CapfiltError } from '../core/errors.ts';
import { detectFormat } from '../io/readers/index.ts';
import { openObjectStore } from '../io/storage/object-store.ts';
import { isS3Url } from '../io/storage/s3-url.ts';
import { checkModelFolder, type CheckedRole } from '../models/check.ts';
import { listInputFiles, readRows } from '../pipeline/input.ts';
import { stageDef, type StageTable } from '../pipeline/stages/table.ts';

/**
 * What `capfilt run` checks before it touches Redis, plans shards or starts a worker, so that a
 * mistake costs a second and one coded error instead of a started run that fails per shard:
 *   input    every file exists, is readable, has a known format, and its first rows hold the
 *            configured columns (INPUT_UNREADABLE, INPUT_FORMAT_UNSUPPORTED, INPUT_COLUMN_MISSING;
 *            an s3:// input S3_NO_SUCH_BUCKET, S3_NO_SUCH_KEY, S3_ACCESS_DENIED, S3_UNAVAILABLE);
 *            an input without any row is INPUT_EMPTY unless input.allowEmpty (then a warning)
 *   output   the folder can be created and written (OUTPUT_UNWRITABLE)
 *   models   each stage's model folder has a matching config, weights and tokenizer
 *            (MODEL_DIR_INVALID, MODEL_CONFIG_INVALID, TOKENIZER_INVALID), when workers run here
 * Redis is checked next, by resolveRedis (REDIS_UNAVAILABLE), still before any worker starts.
 */
export interface PreflightOptions {
  config: CapfiltConfig;
  log: Logger;
  /** The stage workers run in this process, so their models must load here. */
  workers: boolean;
  table?: StageTable;
}

export interface PreflightResult {
  files: string[];
  /** No file holds a row (only with input.allowEmpty; otherwise INPUT_EMPTY was thrown). */
  empty: boolean;
}

/** Rows read per file to judge its columns: enough to see past a few bad rows at the top. */
const SAMPLE_ROWS = 64;

const MODEL_OPTION: Record<CheckedRole, 'captioner' | 'filter' | 'clip'> = { captioner: 'captioner', imageTextScorer: 'filter', embedder: 'clip' };

export async function preflight(o: PreflightOptions): Promise<PreflightResult> {
  const { config } = o;
  const files = await listInputFiles(config);
  let rows = 0;
  for (const file of files) rows += await checkInputFile(file, config);
  if (rows === 0) {
    const what = files.length === 1 ? files[0] : `${config.input.path} (${files.length} files)`;
    if (!config.input.allowEmpty) throw new CapfiltError('INPUT_EMPTY', `${what}: no rows to process (pass --allow-empty to run it anyway)`, { path: config.input.path });
    o.log.warn({ input: config.input.path }, `${what}: the input holds no rows; the run writes an empty output (input.allowEmpty)`);
  }
  await checkOutput(config.output.dir!, config.s3);
  if (o.workers) {
    for (const stage of config.pipeline.stages) {
      const role = stageDef(stage, o.table).role as CheckedRole | null;
      if (!role || !(role in MODEL_OPTION)) continue;
      const option = MODEL_OPTION[role];
      const dir = config.models[option];
      if (dir === null) throw new CapfiltError('CONFIG_INVALID', `option models.${option}: the ${stage} stage needs a model folder`, { stage });
      checkModelFolder(dir, role, `models.${option}`);
    }
  }
  return { files, empty: rows === 0 };
}

/** Rows seen in the file's first SAMPLE_ROWS (0: the file holds none). */
async function checkInputFile(file: string, config: CapfiltConfig): Promise<number> {
  detectFormat(file, config.input.format);
  // An s3:// object was listed or HEADed by listInputFiles; reading its first rows below is the
  // access check (S3_ACCESS_DENIED, S3_NO_SUCH_KEY, S3_UNAVAILABLE).
  if (!isS3Url(file)) {
    try {
      await access(file, constants.R_OK);
    } catch (e) {
      throw new CapfiltError('INPUT_UNREADABLE', `${file}: ${(e as Error).message}`, { file }, { cause: e });
    }
  }
  // The readers check headers (csv/tsv) and schemas (parquet) themselves and throw
  // INPUT_COLUMN_MISSING; a JSON-lines file has no header, so its first rows stand for it.
  let seen = 0;
  let urlMissing = 0;
  for await (const row of readRows(file, config)) {
    seen++;
    if (row.invalid?.code === 'INPUT_URL_MISSING') urlMissing++;
    if (seen >= SAMPLE_ROWS) break;
  }
  if (seen > 0 && urlMissing === seen) {
    throw new CapfiltError('INPUT_COLUMN_MISSING', `${file}: none of the first ${seen} rows has a value in the url column "${config.input.urlCol}" (--url-col names another)`, { file, column: config.input.urlCol });
  }
  return seen;
}

async function checkOutput(dir: string, s3: CapfiltConfig['s3']): Promise<void> {
  if (isS3Url(dir)) {
    // A missing bucket or refused credentials stop the run here, before any download: one small
    // object written and deleted (S3_NO_SUCH_BUCKET, S3_ACCESS_DENIED, S3_UNAVAILABLE).
    const store = openObjectStore(dir, s3);
    const probe = `.capfilt-write-check-${process.pid}-${Date.now().toString(36)}`;
    await store.put(probe, '');
    await store.delete([probe]);
    return;
  }
  const probe = join(dir, `.capfilt-write-check-${process.pid}`);
  try {
    const st = await stat(dir).catch(() => null);
    if (st && !st.isDirectory()) throw new Error('exists and is not a folder');
    await mkdir(dir, { recursive: true });
    await writeFile(probe, '');
    await rm(probe, { force: true });
  } catch (e) {
    throw new CapfiltError('OUTPUT_UNWRITABLE', `option output.dir ${dir}: ${(e as Error).message}`, { dir }, { cause: e });
  }
}
