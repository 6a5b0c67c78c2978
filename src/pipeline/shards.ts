import { createHash } from 'node:crypto';
import { basename, relative, resolve } from 'node:path';
import { resolveLocation } from '../io/storage/output.ts';
import type { ShardInfo } from '../core/shard.ts';
import { isS3Url } from '../io/storage/s3-url.ts';

/**
 * Deterministic shard naming. A shard id depends only on the input file (its path relative to
 * the input root, so moving a dataset folder keeps the ids) and the shard's index in that file;
 * the output number is the shard's position in the run's feed order (files sorted by path,
 * shards in file order). Re-planning the same input therefore yields the same ids and the same
 * output names, which is what makes "output exists → skip" a correct resume rule. An s3:// input
 * is named the same way (its key below the input prefix), so a dataset copied between a folder and
 * a bucket keeps its shard ids.
 */
export function fileTag(inputRoot: string, inputFile: string): string {
  return createHash('sha256').update(relativeName(inputRoot, inputFile)).digest('hex').slice(0, 10);
}

function relativeName(inputRoot: string, inputFile: string): string {
  if (isS3Url(inputFile)) {
    const prefix = inputRoot.endsWith('/') ? inputRoot : `${inputRoot}/`;
    return inputFile.startsWith(prefix) ? inputFile.slice(prefix.length) : inputFile.slice(inputFile.lastIndexOf('/') + 1);
  }
  const root = resolve(inputRoot);
  const file = resolve(inputFile);
  return root === file ? basename(file) : relative(root, file).split('\\').join('/');
}

/** A local path resolved; an s3:// URL as given. */
export function inputLocation(p: string): string {
  return isS3Url(p) ? p : resolve(p);
}

export function shardId(tag: string, indexInFile: number): string {
  return `${tag}-${String(indexInFile).padStart(5, '0')}`;
}

export function outputName(number: number): string {
  return String(number).padStart(5, '0');
}

/** The run id names the run's Redis keys: one output folder is one run, whoever drives it. */
export function runIdFor(outDir: string): string {
  return createHash('sha256').update(resolveLocation(outDir)).digest('hex').slice(0, 12);
}

/** Row key: output name + position in the shard, e.g. "000420017" (webdataset sample key). */
export function rowKey(number: number, position: number, rowsPerShard: number): string {
  const width = Math.max(4, String(rowsPerShard - 1).length);
  return `${outputName(number)}${String(position).padStart(width, '0')}`;
}

export interface FilePlan {
  file: string;
  rows: number;
}

/** Splits files (in the order given, which the caller sorts) into shards of `rowsPerShard`. */
export function planShards(runId: string, inputRoot: string, files: FilePlan[], rowsPerShard: number): ShardInfo[] {
  const shards: ShardInfo[] = [];
  for (const f of files) {
    const tag = fileTag(inputRoot, f.file);
    for (let i = 0, start = 0; start < f.rows; i++, start += rowsPerShard) {
      const number = shards.length;
      shards.push({
        runId,
        shardId: shardId(tag, i),
        number,
        outputName: outputName(number),
        inputFile: inputLocation(f.file),
        indexInFile: i,
        rowStart: start,
        rowCount: Math.min(rowsPerShard, f.rows - start),
      });
    }
  }
  return shards;
}
