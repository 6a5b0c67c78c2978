/**
 * The one catalogue of coded errors. Every error capfilt raises on purpose carries a code from
 * this table; row-level failures store the code as the row's `reason`. A test pins the table so
 * that codes (which users grep for and which are stored in output parquet files) never change
 * meaning silently, and checks docs/errors.md against it. Add new codes; never rename or reuse one.
 *
 * Each code carries its retry kind, the one answer to "can trying again help?":
 *   transient  the cause may go away (a network, a server, a disk, Redis): a worker retries a
 *              stage that threw it with backoff, and `capfilt retry-failed` re-runs rows with it
 *   permanent  the same input fails the same way (bad config, model files, bytes, a decision):
 *              a worker fails the job at once; retry-failed leaves the row as it is
 */
export type RetryKind = 'transient' | 'permanent';

export interface ErrorEntry {
  message: string;
  retry: RetryKind;
}

const transient = (message: string): ErrorEntry => ({ message, retry: 'transient' });
const permanent = (message: string): ErrorEntry => ({ message, retry: 'permanent' });

export const ERROR_CODES = {
  // configuration and CLI
  CONFIG_INVALID: permanent('configuration is invalid'),
  CONFIG_FILE_UNREADABLE: permanent('configuration file cannot be read or parsed'),
  CLI_USAGE: permanent('command line usage error'),

  // model files
  MODEL_DIR_INVALID: permanent('model folder is missing files or has an unknown layout'),
  MODEL_CONFIG_INVALID: permanent('model config.json / preprocessor_config.json is invalid'),
  MODEL_UNSUPPORTED: permanent('model uses a feature this runtime does not support'),
  WEIGHTS_TRUNCATED: permanent('weights file is shorter than its header says'),
  WEIGHTS_LFS_POINTER: permanent('weights file is a Git LFS pointer, not the weights'),
  WEIGHTS_HEADER_INVALID: permanent('weights file header is malformed'),
  WEIGHTS_TENSOR_INVALID: permanent('a tensor entry is inconsistent (dtype, shape, offsets)'),
  WEIGHTS_MISSING_KEYS: permanent('weights file lacks tensors the model needs'),
  WEIGHTS_UNEXPECTED_KEYS: permanent('weights file holds tensors the model does not know'),
  PICKLE_FORBIDDEN_GLOBAL: permanent('pickle references a global outside the allowed state-dict set'),
  PICKLE_INVALID: permanent('pickle stream is malformed or uses an unsupported opcode'),
  TOKENIZER_INVALID: permanent('tokenizer files are missing or malformed'),
  MODEL_PULL_FAILED: transient('model download from the hub failed'),

  // inference
  SESSION_INPUT_MISMATCH: permanent('graph inputs do not match the session (names, dtypes or shapes)'),
  SESSION_RUN_FAILED: transient('ONNX Runtime failed to run a graph'),
  DEVICE_UNAVAILABLE: permanent('the requested execution device is not available'),
  IMAGE_DECODE_FAILED: permanent('image bytes cannot be decoded'),

  // input rows and files (readers)
  INPUT_UNREADABLE: permanent('input file cannot be opened or read'),
  INPUT_FORMAT_UNSUPPORTED: permanent('input file format is not one of parquet, csv, tsv, jsonl, txt (optionally .gz)'),
  INPUT_COLUMN_MISSING: permanent('a configured input column (url, caption) is not in the file'),
  INPUT_ROW_MALFORMED: permanent('an input row cannot be parsed (bad JSON line, broken CSV quoting)'),
  INPUT_URL_MISSING: permanent('input row has no URL'),
  INPUT_URL_INVALID: permanent('input row URL is not a valid http(s) URL'),
  INPUT_CAPTION_INVALID: permanent('input row caption is not a string'),
  INPUT_CAPTION_TOO_LONG: permanent('input row caption exceeds the size limit'),
  INPUT_ENCODING_INVALID: permanent('input row is not valid UTF-8'),
  INPUT_EMPTY: permanent('the input holds no rows (--allow-empty / input.allowEmpty runs it anyway, with a warning)'),

  // downloading
  DOWNLOAD_TIMEOUT: transient('download timed out (connect, headers, body or total)'),
  DOWNLOAD_HTTP_STATUS: transient('server answered with a non-success HTTP status'),
  DOWNLOAD_TOO_LARGE: permanent('response body exceeds the size limit'),
  DOWNLOAD_OPTED_OUT: permanent('X-Robots-Tag opts the resource out (noai, noimageai, noindex, noimageindex)'),
  DOWNLOAD_REDIRECT_LIMIT: permanent('too many redirects or a redirect loop'),
  DOWNLOAD_REDIRECT_INVALID: permanent('redirect without a usable Location (missing, malformed or not http(s))'),
  DOWNLOAD_BLOCKED_ADDRESS: permanent('URL resolves to an address the SSRF guard blocks (loopback, private, link-local, ...)'),
  DOWNLOAD_DNS_FAILED: transient('host name does not resolve'),
  DOWNLOAD_NETWORK: transient('network error (connection refused or reset, TLS failure)'),
  DOWNLOAD_ENCODING_INVALID: permanent('Content-Encoding is unsupported or the compressed body is corrupt'),
  DOWNLOAD_ABORTED: transient('download was cancelled'),

  // image checks and conversion
  IMAGE_EMPTY: permanent('downloaded body is empty'),
  IMAGE_NOT_AN_IMAGE: permanent('downloaded body is not an image (HTML, text, JSON ...)'),
  IMAGE_FORMAT_REFUSED: permanent('image format is refused by configuration (SVG by default)'),
  IMAGE_FORMAT_UNSUPPORTED: permanent('image format cannot be decoded by this build'),
  IMAGE_PIXEL_LIMIT: permanent('declared image dimensions exceed limitInputPixels (decompression bomb guard)'),
  IMAGE_TOO_SMALL: permanent('image is smaller than minImageSize'),
  IMAGE_TOO_LARGE: permanent('image area exceeds maxImageArea'),
  IMAGE_ASPECT_RATIO: permanent('image aspect ratio exceeds maxAspectRatio'),
  IMAGE_ENCODE_FAILED: permanent('image cannot be resized or encoded'),
  IMAGE_DUPLICATE: permanent('image bytes are an exact duplicate of an earlier row in this run'),

  // output shards
  OUTPUT_WRITE_FAILED: transient('an output file cannot be written'),
  OUTPUT_SHARD_INVALID: permanent('an output shard is missing or unreadable'),
  OUTPUT_EXISTS: permanent('the output folder already holds a run'),
  OUTPUT_UNWRITABLE: permanent('the output folder cannot be created or written (no permission, not a folder, read-only file system)'),
  REPORT_FAILED: permanent('the run report cannot be built from the output folder (no finished shard, unreadable run.json or shard files)'),

  // filter decisions (row reasons written by the filter stage, by rethreshold and by dedup)
  FILTER_NO_TEXT_KEPT: permanent('no text of the row (web or synthetic) passed the filter thresholds'),
  RETHRESHOLD_IMAGE_MISSING: permanent('a row passes the new thresholds but the old output has no image for it (written without filtered images)'),
  NEAR_DUPLICATE: permanent('capfilt dedup: the image embedding is a near-duplicate (cosine at or above --semantic) of a kept row of the same cluster, named in near_duplicate_of'),

  // embeddings output (read back by capfilt dedup)
  EMBEDDINGS_MISSING: permanent('the output has no embeddings for its kept rows (written without --save-embeddings / clip.saveEmbeddings)'),
  EMBEDDINGS_INVALID: permanent('an embeddings file is unreadable or disagrees with its shard (npy header, row count, keys)'),
  EMBEDDINGS_DIMS_MISMATCH: permanent('embeddings of one output have different dimensions (shards written by different models)'),

  // dashboard and telemetry
  DASHBOARD_TOKEN_REQUIRED: permanent('the dashboard binds a non-loopback address but no token was given'),
  DASHBOARD_LISTEN_FAILED: transient('the dashboard cannot listen on the requested host and port'),
  DASHBOARD_BUSY: transient('the dashboard would hold this request longer than its pacing allows (too many requests from this client or in all); retry after the given seconds'),
  METRICS_LISTEN_FAILED: transient('the /metrics server cannot listen on the requested host and port'),

  // pipeline, queues and workers
  REDIS_UNAVAILABLE: transient('Redis cannot be reached at the configured URL (and no private redis-server could be started)'),
  REDIS_LOST: transient('Redis stopped answering during a run and did not come back within redis.outageTimeoutMs'),
  RUN_ACTIVE: transient('another capfilt run process is already driving this output folder'),
  STAGING_STATE_MISSING: permanent('a shard has no state in the staging store'),
  STAGING_BLOB_MISSING: permanent('a staged image is missing from the staging store'),
  STAGING_UNAVAILABLE: transient('the staging folder cannot be used (not a folder, no permission, disk full, ...)'),
  STAGING_BACKEND_MISMATCH: permanent('staging.dir does not suit staging.backend (an s3:// URL needs backend s3, a folder fs)'),
  STAGE_FAILED: transient('a stage failed on the whole shard after all attempts; its pending rows are failed'),
  WORKER_SHUTDOWN: transient('the worker stopped before the job finished; the job is released for another worker'),
  // S3-compatible object storage
  S3_URL_INVALID: permanent('not an s3://bucket/prefix URL'),
  S3_UNAVAILABLE: transient('the S3 endpoint cannot be reached or answered with a server error or throttling after all attempts'),
  S3_ACCESS_DENIED: permanent('S3 refused the credentials or the request (no credentials found, bad signature, 403)'),
  S3_NO_SUCH_BUCKET: permanent('the S3 bucket does not exist'),
  S3_NO_SUCH_KEY: permanent('the S3 object does not exist'),
  // anything else
  INTERNAL: transient('an unexpected error without a code of its own (the message says what); retried, as its cause is unknown'),
} satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class CapfiltError extends Error {
  readonly code: ErrorCode;
  /** The message without the "CODE: " prefix. */
  readonly text: string;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'CapfiltError';
    this.code = code;
    this.text = message;
    this.details = details;
  }
}

export function isCapfiltError(e: unknown, code?: ErrorCode): e is CapfiltError {
  return e instanceof CapfiltError && (code === undefined || e.code === code);
}

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** The retry kind of a code; a string outside the catalogue (none should occur) counts as INTERNAL. */
export function retryKindOf(code: string): RetryKind {
  return (isErrorCode(code) ? ERROR_CODES[code] : ERROR_CODES.INTERNAL).retry;
}

/** Every code of one retry kind, in catalogue order. */
export function codesOfKind(kind: RetryKind): ErrorCode[] {
  return (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => ERROR_CODES[c].retry === kind);
}

/** The CapfiltError an error is or wraps (as its `cause`, e.g. a queue library's "do not retry" error). */
export function capfiltErrorIn(e: unknown): CapfiltError | null {
  for (let cur: unknown = e, depth = 0; cur && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    if (cur instanceof CapfiltError) return cur;
  }
  return null;
}

/** Short, stable text for logs and per-row `reason_detail` columns. */
export function describeError(e: unknown): { code: string; message: string } {
  const coded = capfiltErrorIn(e);
  if (coded) return { code: coded.code, message: coded.message };
  if (e instanceof Error) return { code: 'INTERNAL', message: e.message };
  return { code: 'INTERNAL', message: String(e) };
}

/** The code and the message without its "CODE: " prefix (for text that names the code itself). */
export function codeAndText(e: unknown): { code: ErrorCode; text: string } {
  const coded = capfiltErrorIn(e);
  if (coded) return { code: coded.code, text: coded.text };
  return { code: 'INTERNAL', text: e instanceof Error ? e.message : String(e) };
}

/**
 * What a Node or undici error code says happened, for the code-less errors of libraries (the
 * socket, DNS, undici): the one place that maps them. Each user turns a kind into its own
 * catalogue code (the downloader into DOWNLOAD_*, the Redis clients into "wait for Redis").
 */
export type SystemErrorKind = 'connection' | 'timeout' | 'dns' | 'dns-temporary' | 'too-large';

export const SYSTEM_ERROR_KINDS: Readonly<Record<string, SystemErrorKind>> = {
  ECONNREFUSED: 'connection',
  ECONNRESET: 'connection',
  ECONNABORTED: 'connection',
  EPIPE: 'connection',
  ETIMEDOUT: 'connection',
  EHOSTUNREACH: 'connection',
  ENETUNREACH: 'connection',
  ENOTCONN: 'connection',
  UND_ERR_SOCKET: 'connection',
  UND_ERR_CLOSED: 'connection',
  UND_ERR_CONNECT_TIMEOUT: 'timeout',
  UND_ERR_HEADERS_TIMEOUT: 'timeout',
  UND_ERR_BODY_TIMEOUT: 'timeout',
  ENOTFOUND: 'dns',
  EAI_NONAME: 'dns',
  EAI_NODATA: 'dns',
  EAI_AGAIN: 'dns-temporary',
  UND_ERR_RES_EXCEEDED_MAX_SIZE: 'too-large',
};

/**
 * The first error in `e`'s cause chain (and an AggregateError's errors, as a connect to several
 * addresses throws) whose `code` is in SYSTEM_ERROR_KINDS.
 */
export function systemErrorOf(e: unknown, depth = 0): { code: string; kind: SystemErrorKind; error: unknown } | null {
  for (let cur: unknown = e; cur && depth < 6; cur = (cur as { cause?: unknown }).cause, depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && Object.hasOwn(SYSTEM_ERROR_KINDS, code)) return { code, kind: SYSTEM_ERROR_KINDS[code], error: cur };
    if (cur instanceof AggregateError) {
      for (const inner of cur.errors) {
        const found = systemErrorOf(inner, depth + 1);
        if (found) return found;
      }
    }
  }
  return null;
}
