import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * One process-wide logger, in one of two formats:
 *   json    JSON lines (machines read worker logs): `--json`, a log stream that is not a
 *           terminal, or CAPFILT_LOG_FORMAT=json
 *   pretty  one human line per entry (time, level, message; fields only for warnings and errors),
 *           formatted in this thread by pino-pretty: the default on a terminal
 * The CLI picks the format once (configureLogging) before a command runs. The choice and the
 * level travel in the environment so that worker threads started later (model inference,
 * parquet decoding) log the same way; they write to their process.stderr, which Node forwards
 * to the main thread's, so a progress bar that owns the terminal sees their lines too.
 */
export type LogFormat = 'json' | 'pretty';

let root: Logger | undefined;

/** The format and level given by the environment (CAPFILT_LOG_PRETTY=1 is the old spelling of pretty). */
export function logFormat(env: NodeJS.ProcessEnv = process.env): LogFormat {
  if (env.CAPFILT_LOG_FORMAT === 'pretty' || env.CAPFILT_LOG_FORMAT === 'json') return env.CAPFILT_LOG_FORMAT;
  return env.CAPFILT_LOG_PRETTY === '1' ? 'pretty' : 'json';
}

/**
 * Sets the format (and the level, when given) for this process and the threads it starts, and
 * rebuilds the root logger. Loggers taken before keep their old settings, so call it first.
 */
export function configureLogging(o: { format: LogFormat; level?: string }): void {
  process.env.CAPFILT_LOG_FORMAT = o.format;
  if (o.level) process.env.CAPFILT_LOG_LEVEL = o.level;
  root = undefined;
}

/** Changes the level of the root logger and of threads started from now on. */
export function setLogLevel(level: string): void {
  process.env.CAPFILT_LOG_LEVEL = level;
  if (root) root.level = level;
}

const PRETTY_SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg']);

/** "message key=value key=value": fields for warnings and errors, where they carry the why. */
function prettyMessage(log: Record<string, unknown>): string {
  const msg = String(log.msg ?? '');
  if (Number(log.level) < 40) return msg;
  const fields = Object.entries(log)
    .filter(([k]) => !PRETTY_SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return fields ? `${msg}  ${fields.length > 400 ? `${fields.slice(0, 400)}…` : fields}` : msg;
}

function prettyStream(): DestinationStream {
  // Loaded only in pretty mode: JSON-only processes (workers in a cluster) never pay for it.
  const pretty = createRequire(import.meta.url)('pino-pretty') as (o: Record<string, unknown>) => DestinationStream;
  const colorize = !process.env.NO_COLOR && process.stderr.isTTY === true;
  return pretty({
    destination: process.stderr,
    sync: true,
    colorize,
    // Fields go into the message (prettyMessage); singleLine with hideObject would drop the newline.
    hideObject: true,
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname',
    messageFormat: prettyMessage,
  });
}

export function logger(): Logger {
  if (!root) {
    const format = logFormat();
    // A terminal (or a thread) gets process.stderr, which a progress bar can route around itself;
    // a file or pipe gets direct, buffered fd writes.
    const destination = format === 'pretty' ? prettyStream() : !isMainThread || process.stderr.isTTY ? process.stderr : pino.destination(2);
    root = pino({ level: process.env.CAPFILT_LOG_LEVEL ?? 'info', base: { pid: process.pid } }, destination);
  }
  return root;
}

export function childLogger(bindings: Record<string, unknown>): Logger {
  return logger().child(bindings);
}
