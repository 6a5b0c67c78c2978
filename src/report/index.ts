import { join } from 'node:path';
import type { Logger } from 'pino';
import { describeError } from '../core/errors.ts';
import { writeFileAtomic } from '../io/writers/atomic.ts';
import { collectReport, type CollectOptions, type ReportData } from './collect.ts';
import { renderReport } from './html.ts';

/**
 * `report.html` of an output folder: written by every run at its end and by `capfilt report OUT`
 * for any finished output (REPORT_FAILED when the folder holds no capfilt output).
 */
export const REPORT_FILE = 'report.html';

export async function writeReport(out: string, o: CollectOptions = {}): Promise<{ file: string; data: ReportData; bytes: number }> {
  const data = await collectReport(out, o);
  const html = renderReport(data);
  const file = join(out, REPORT_FILE);
  await writeFileAtomic(file, html);
  return { file, data, bytes: Buffer.byteLength(html) };
}

/**
 * The run's report, written after run.json: a report that cannot be built is a warning, never a
 * failed run (the data is written; `capfilt report OUT` can try again).
 */
export async function writeRunReport(out: string, log: Logger): Promise<string | null> {
  const t0 = Date.now();
  try {
    const r = await writeReport(out);
    log.info({ file: r.file, bytes: r.bytes, ms: Date.now() - t0 }, 'report written');
    return r.file;
  } catch (e) {
    log.warn({ err: describeError(e) }, `report.html not written: ${describeError(e).message}`);
    return null;
  }
}

export type { ReportData } from './collect.ts';
