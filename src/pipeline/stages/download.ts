import type { CapfiltConfig } from '../../config/schema.ts';
import { MemoryDuplicateIndex, type DuplicateIndex } from '../../io/duplicates.ts';
import { Fetcher, type FetchOptions } from '../../io/fetch.ts';
import { processImage, sha256Hex, type ImageOptions } from '../../io/image.ts';
import type { RowRecord } from '../../core/records.ts';
import type { StageRunContext } from './types.ts';
import type { ShardState } from '../../core/shard.ts';

/**
 * Download stage: for every pending row with a URL, fetch (src/io/fetch.ts), hash the original
 * bytes, check for an exact duplicate, decode/check/resize/encode (src/io/image.ts) and put the
 * encoded image in the staging store.
 * Input:  records with status 'pending' and `url` (invalid input rows arrive already 'failed').
 * Output: per row either `image` (+ `fetch`) with status still 'pending' for the model stages,
 *         or status 'failed' with a DOWNLOAD_* / IMAGE_* / INPUT_URL_INVALID reason.
 * Rows that already have an image (a retried job) are left alone. A staging-store error throws
 * (shard-level, retried by the worker); a row's own problem never does. When `signal` aborts,
 * the stage throws instead of recording rows as DOWNLOAD_ABORTED, so the shard is re-run whole.
 */
export interface BlobSink {
  /** Stores an encoded image under `name` ("<key>.<ext>"); returns the ref kept in the record. */
  put(name: string, bytes: Uint8Array): Promise<string>;
}

export interface DownloadContext {
  fetcher: Fetcher;
  image: Partial<ImageOptions>;
  /** Exact-duplicate handling: off, mark (`image.duplicateOf`), drop (row fails IMAGE_DUPLICATE). */
  duplicates: 'off' | 'mark' | 'drop';
  duplicateIndex: DuplicateIndex | null;
  store: BlobSink;
  /** Rows in flight at once. */
  concurrency: number;
  signal?: AbortSignal;
}

export async function downloadRows(records: RowRecord[], ctx: DownloadContext): Promise<RowRecord[]> {
  const todo = records.filter((r) => r.status === 'pending' && r.image === null);
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      if (ctx.signal?.aborted) return;
      await downloadOne(todo[next++], ctx);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(ctx.concurrency, todo.length)) }, worker));
  ctx.signal?.throwIfAborted();
  return records;
}

function fail(r: RowRecord, code: string, detail: string): void {
  r.status = 'failed';
  r.reason = code;
  r.reasonDetail = detail.slice(0, 500);
}

async function downloadOne(r: RowRecord, ctx: DownloadContext): Promise<void> {
  if (r.url === null) return fail(r, 'INPUT_URL_MISSING', `row ${r.rowIndex}: no URL`);
  const res = await ctx.fetcher.fetch(r.url, ctx.signal);
  r.fetch = { httpStatus: res.httpStatus, finalUrl: res.finalUrl, bytes: res.bytes, attempts: res.attempts, ms: res.ms };
  if (!res.ok) {
    if (res.code === 'DOWNLOAD_ABORTED' && ctx.signal?.aborted) return;
    return fail(r, res.code, res.detail);
  }
  const sha256 = sha256Hex(res.body);
  let duplicateOf: string | null = null;
  if (ctx.duplicates !== 'off' && ctx.duplicateIndex) {
    duplicateOf = await ctx.duplicateIndex.claim(sha256, r.key);
    if (duplicateOf !== null && ctx.duplicates === 'drop') return fail(r, 'IMAGE_DUPLICATE', `same bytes (sha256 ${sha256.slice(0, 16)}…) as row ${duplicateOf}`);
  }
  let img;
  try {
    img = await processImage(res.body, ctx.image, res.contentType);
  } catch (e) {
    return fail(r, 'IMAGE_DECODE_FAILED', (e as Error).message);
  }
  if (!img.ok) return fail(r, img.code, img.detail);
  const ref = await ctx.store.put(`${r.key}.${img.format}`, img.data);
  r.image = {
    ref,
    width: img.width,
    height: img.height,
    originalWidth: img.originalWidth,
    originalHeight: img.originalHeight,
    sha256,
    format: img.format,
    ...(duplicateOf !== null ? { duplicateOf } : {}),
  };
}

/** The fetcher options a run's `download` config slice stands for. */
export function fetchOptionsFrom(d: CapfiltConfig['download']): Partial<FetchOptions> {
  return {
    timeoutMs: d.timeoutMs,
    connectTimeoutMs: d.connectTimeoutMs,
    headersTimeoutMs: d.timeoutMs,
    bodyTimeoutMs: d.timeoutMs,
    retries: d.retries,
    retryBaseMs: d.retryBaseMs,
    maxBodyBytes: d.maxBodyBytes,
    maxDecodedBytes: Math.max(d.maxBodyBytes, 2 * d.maxBodyBytes),
    maxRedirects: d.maxRedirects,
    perHostConcurrency: d.perHostConcurrency,
    perHostDelayMs: d.perHostDelayMs,
    userAgentToken: d.userAgentToken,
    userAgentUrl: d.userAgentUrl,
    disallowedHeaderDirectives: d.disallowedHeaderDirectives,
    ssrfAllowlist: d.ssrfAllowlist,
  };
}

export function imageOptionsFrom(i: CapfiltConfig['image']): Partial<ImageOptions> {
  return {
    size: i.size,
    resizeMode: i.resizeMode,
    format: i.format,
    quality: i.quality,
    minImageSize: i.minImageSize,
    maxImageArea: i.maxImageArea,
    maxAspectRatio: i.maxAspectRatio,
    limitInputPixels: i.limitInputPixels,
  };
}

// One fetcher per distinct download config per process: it holds the connection pools, the DNS
// cache and the per-host limits, which only work if every shard of the process shares them.
const fetchers = new Map<string, Fetcher>();
const memoryIndexes = new Map<string, MemoryDuplicateIndex>();

export function sharedFetcher(d: CapfiltConfig['download']): Fetcher {
  const id = JSON.stringify(d);
  let f = fetchers.get(id);
  if (!f) {
    f = new Fetcher(fetchOptionsFrom(d));
    fetchers.set(id, f);
  }
  return f;
}

/** Closes the process's fetchers (worker shutdown). */
export async function closeDownloadResources(): Promise<void> {
  const all = [...fetchers.values()];
  fetchers.clear();
  memoryIndexes.clear();
  await Promise.all(all.map((f) => f.close()));
}

/**
 * The worker-facing stage (config.download and config.image). `duplicateIndex` should be a RedisDuplicateIndex shared by all
 * workers of the run; without one, a per-process in-memory index is used (exact for
 * single-process runs, per-process otherwise).
 */
export async function downloadShard(state: ShardState, ctx: StageRunContext<'download' | 'image'> & { fetcher?: Fetcher }): Promise<void> {
  const { runId, shardId } = state.shard;
  let index = ctx.duplicateIndex ?? null;
  if (!index && ctx.config.image.duplicates !== 'off') {
    index = memoryIndexes.get(runId) ?? new MemoryDuplicateIndex();
    memoryIndexes.set(runId, index as MemoryDuplicateIndex);
  }
  await downloadRows(state.records, {
    fetcher: ctx.fetcher ?? sharedFetcher(ctx.config.download),
    image: imageOptionsFrom(ctx.config.image),
    duplicates: ctx.config.image.duplicates,
    duplicateIndex: index,
    store: { put: (name, bytes) => ctx.staging.putBlob(runId, shardId, name, bytes) },
    concurrency: ctx.config.download.concurrency,
    signal: ctx.signal,
  });
}
