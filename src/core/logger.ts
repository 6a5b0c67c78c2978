import { pino, type Logger } from 'pino';

/**
 * One process-wide logger. JSON lines by default (machines read worker logs); pretty output only
 * when asked, because pino-pretty runs in a worker thread and costs startup time.
 */
let root: Logger | undefined;

export function logger(): Logger {
  if (!root) {
    const pretty = process.env.CAPFILT_LOG_PRETTY === '1';
    root = pino({
      level: process.env.CAPFILT_LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      ...(pretty ? { transport: { target: 'pino-pretty', options: { destination: 2 } } } : {}),
    }, pretty ? undefined : pino.destination(2));
  }
  return root;
}

export function childLogger(bindings: Record<string, unknown>): Logger {
  return logger().child(bindings);
}
