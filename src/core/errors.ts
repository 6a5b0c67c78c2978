/**
 * The one catalogue of coded errors. Every error capfilt raises on purpose carries a code from
 * this table; row-level failures store the code as the row's `reason`. A test pins the table so
 * that codes (which users grep for and which are stored in output parquet files) never change
 * meaning silently. Add new codes; never rename or reuse one.
 */
export const ERROR_CODES = {
  // configuration and CLI
  CONFIG_INVALID: 'configuration is invalid',
  CONFIG_FILE_UNREADABLE: 'configuration file cannot be read or parsed',
  CLI_USAGE: 'command line usage error',

  // model files
  MODEL_DIR_INVALID: 'model folder is missing files or has an unknown layout',
  MODEL_CONFIG_INVALID: 'model config.json / preprocessor_config.json is invalid',
  MODEL_UNSUPPORTED: 'model uses a feature this runtime does not support',
  WEIGHTS_TRUNCATED: 'weights file is shorter than its header says',
  WEIGHTS_HEADER_INVALID: 'weights file header is malformed',
  WEIGHTS_TENSOR_INVALID: 'a tensor entry is inconsistent (dtype, shape, offsets)',
  WEIGHTS_MISSING_KEYS: 'weights file lacks tensors the model needs',
  WEIGHTS_UNEXPECTED_KEYS: 'weights file holds tensors the model does not know',
  PICKLE_FORBIDDEN_GLOBAL: 'pickle references a global outside the allowed state-dict set',
  PICKLE_INVALID: 'pickle stream is malformed or uses an unsupported opcode',
  TOKENIZER_INVALID: 'tokenizer files are missing or malformed',
  MODEL_PULL_FAILED: 'model download from the hub failed',

  // inference
  SESSION_INPUT_MISMATCH: 'graph inputs do not match the session (names, dtypes or shapes)',
  SESSION_RUN_FAILED: 'ONNX Runtime failed to run a graph',
  DEVICE_UNAVAILABLE: 'the requested execution device is not available',
  IMAGE_DECODE_FAILED: 'image bytes cannot be decoded',

  // input rows and files (readers)
  INPUT_UNREADABLE: 'input file cannot be opened or read',
  INPUT_FORMAT_UNSUPPORTED: 'input file format is not one of parquet, csv, tsv, jsonl, txt (optionally .gz)',
  INPUT_COLUMN_MISSING: 'a configured input column (url, caption) is not in the file',
  INPUT_ROW_MALFORMED: 'an input row cannot be parsed (bad JSON line, broken CSV quoting)',
  INPUT_URL_MISSING: 'input row has no URL',
  INPUT_URL_INVALID: 'input row URL is not a valid http(s) URL',
  INPUT_CAPTION_INVALID: 'input row caption is not a string',
  INPUT_CAPTION_TOO_LONG: 'input row caption exceeds the size limit',
  INPUT_ENCODING_INVALID: 'input row is not valid UTF-8',

  // downloading
  DOWNLOAD_TIMEOUT: 'download timed out (connect, headers, body or total)',
  DOWNLOAD_HTTP_STATUS: 'server answered with a non-success HTTP status',
  DOWNLOAD_TOO_LARGE: 'response body exceeds the size limit',
  DOWNLOAD_OPTED_OUT: 'X-Robots-Tag opts the resource out (noai, noimageai, noindex, noimageindex)',
  DOWNLOAD_REDIRECT_LIMIT: 'too many redirects or a redirect loop',
  DOWNLOAD_REDIRECT_INVALID: 'redirect without a usable Location (missing, malformed or not http(s))',
  DOWNLOAD_BLOCKED_ADDRESS: 'URL resolves to an address the SSRF guard blocks (loopback, private, link-local, ...)',
  DOWNLOAD_DNS_FAILED: 'host name does not resolve',
  DOWNLOAD_NETWORK: 'network error (connection refused or reset, TLS failure)',
  DOWNLOAD_ENCODING_INVALID: 'Content-Encoding is unsupported or the compressed body is corrupt',
  DOWNLOAD_ABORTED: 'download was cancelled',

  // image checks and conversion
  IMAGE_EMPTY: 'downloaded body is empty',
  IMAGE_NOT_AN_IMAGE: 'downloaded body is not an image (HTML, text, JSON ...)',
  IMAGE_FORMAT_REFUSED: 'image format is refused by configuration (SVG by default)',
  IMAGE_FORMAT_UNSUPPORTED: 'image format cannot be decoded by this build',
  IMAGE_PIXEL_LIMIT: 'declared image dimensions exceed limitInputPixels (decompression bomb guard)',
  IMAGE_TOO_SMALL: 'image is smaller than minImageSize',
  IMAGE_TOO_LARGE: 'image area exceeds maxImageArea',
  IMAGE_ASPECT_RATIO: 'image aspect ratio exceeds maxAspectRatio',
  IMAGE_ENCODE_FAILED: 'image cannot be resized or encoded',
  IMAGE_DUPLICATE: 'image bytes are an exact duplicate of an earlier row in this run',

  // output shards
  OUTPUT_WRITE_FAILED: 'an output file cannot be written',
  OUTPUT_SHARD_INVALID: 'an output shard is missing or unreadable',
  OUTPUT_EXISTS: 'the output folder already holds a run',

  // filter decisions (row reasons written by the filter stage and by rethreshold)
  FILTER_NO_TEXT_KEPT: 'no text of the row (web or synthetic) passed the filter thresholds',
  RETHRESHOLD_IMAGE_MISSING: 'a row passes the new thresholds but the old output has no image for it (written without filtered images)',

  // dashboard and telemetry
  DASHBOARD_TOKEN_REQUIRED: 'the dashboard binds a non-loopback address but no token was given',
  DASHBOARD_LISTEN_FAILED: 'the dashboard cannot listen on the requested host and port',
  DASHBOARD_BUSY: 'the dashboard would hold this request longer than its pacing allows (too many requests from this client or in all); retry after the given seconds',
  METRICS_LISTEN_FAILED: 'the /metrics server cannot listen on the requested host and port',

  // pipeline, queues and workers
  REDIS_UNAVAILABLE: 'Redis cannot be reached at the configured URL (and no private redis-server could be started)',
  REDIS_LOST: 'Redis stopped answering during a run and did not come back within redis.outageTimeoutMs',
  RUN_ACTIVE: 'another capfilt run process is already driving this output folder',
  STAGING_STATE_MISSING: 'a shard has no state in the staging store',
  STAGING_BLOB_MISSING: 'a staged image is missing from the staging store',
  STAGING_UNAVAILABLE: 'the staging folder cannot be used (not a folder, no permission, disk full, ...)',
  STAGE_FAILED: 'a stage failed on the whole shard after all attempts; its pending rows are failed',
  WORKER_SHUTDOWN: 'the worker stopped before the job finished; the job is released for another worker',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class CapfiltError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'CapfiltError';
    this.code = code;
    this.details = details;
  }
}

export function isCapfiltError(e: unknown, code?: ErrorCode): e is CapfiltError {
  return e instanceof CapfiltError && (code === undefined || e.code === code);
}

/** Short, stable text for logs and per-row `reason_detail` columns. */
export function describeError(e: unknown): { code: string; message: string } {
  if (e instanceof CapfiltError) return { code: e.code, message: e.message };
  if (e instanceof Error) return { code: 'INTERNAL', message: e.message };
  return { code: 'INTERNAL', message: String(e) };
}
