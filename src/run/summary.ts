import type { CapfiltConfig } from '../config/schema.ts';
import { CAPFILT_VERSION } from '../io/fetch.ts';
import { openOutput, type OutputLocation } from '../io/storage/output.ts';
import { writeRunJson } from '../io/writers/run-json.ts';
import type { TopFractionSummary } from './rethreshold.ts';

/**
 * The run summary: what `capfilt run` returns and prints, and run.json in the output folder
 * (config, model ids and hashes, versions, totals, filter rates), written atomically.
 */
export interface RunSummary {
  runId: string;
  input: string;
  out: string;
  status: 'done' | 'failed' | 'interrupted';
  stages: string[];
  totalRows: number;
  totalShards: number;
  rows: number;
  kept: number;
  filtered: number;
  failed: number;
  shardsWritten: number;
  shardsSkipped: number;
  failedShards: Record<string, string>;
  rowsInFailedShards: number;
  /** rows + rows of failed shards = input rows, kept + filtered + failed = rows, one record per shard. */
  reconciled: boolean;
  seconds: number;
  rowsPerSec: number;
  redisUrl: string;
  config: CapfiltConfig;
  labels: Record<string, string>;
  /**
   * With clip.topFraction: the final pass's exact threshold, what it ranked and the rows it moved,
   * beside the shared histogram's threshold over the same texts (`sketchThreshold`).
   */
  clipTopFraction?: TopFractionSummary & { sketchThreshold: number | null };
  /**
   * With the clip stage in the run only: texts rejected per decision rule, rows per top zero-shot
   * label (with clip.labels) and rows written to embeddings/ (with clip.saveEmbeddings), summed
   * over the shards' _stats.json.
   */
  rejectedBy?: Record<string, number>;
  labelCounts?: Record<string, number>;
  embeddingsWritten?: number;
  /**
   * Where report.html went (a path or an s3:// URL), or null when it could not be built. Set
   * after run.json is written (the report is built from it), so run.json never holds it.
   */
  report?: string | null;
}

export function publicSummary(s: RunSummary): Omit<RunSummary, 'config'> {
  const { config: _config, ...rest } = s;
  return rest;
}

/** Writes run.json into the output (a folder or an S3 prefix); returns where it went. */
export async function writeRunSummary(s: RunSummary, models: unknown, output: OutputLocation = openOutput(s.out, s.config.s3)): Promise<string> {
  const body = {
    capfilt: CAPFILT_VERSION,
    node: process.version,
    ...publicSummary(s),
    keptRate: s.rows ? s.kept / s.rows : 0,
    models,
    config: s.config,
    finishedAt: new Date().toISOString(),
  };
  await writeRunJson(output.store, body);
  return output.store.locate('run.json');
}
