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
