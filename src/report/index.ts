import type { Logger } from 'pino';
import { describeError } from '../core/errors.ts';
import { storeOf } from '../io/storage/object-store.ts';
import type { OutputLocation } from '../io/storage/output.ts';
import { collectReport, type CollectOptions, type ReportData } from './collect.ts';
import { renderReport } from './html.ts';

/**
 * `report.html` of an output folder: written by every run at its end and by `capfilt report OUT`
 * for any finished output (REPORT_FAILED when the folder holds no capfilt output).
 */
export const REPORT_FILE = 'report.html';

export async function writeReport(out: string | OutputLocation, o: CollectOptions = {}): Promise<{ file: string; data: ReportData; bytes: number }> {
  const store = typeof out === 'string' ? storeOf(out) : out.store;
  const data = await collectReport(store, o);
  const html = renderReport(data);
  const file = store.locate(REPORT_FILE);
  await store.put(REPORT_FILE, html);
  return { file, data, bytes: Buffer.byteLength(html) };
}

/**
 * The run's report, written after run.json: a report that cannot be built is a warning, never a
 * failed run (the data is written; `capfilt report OUT` can try again).
 */
export async function writeRunReport(out: string | OutputLocation, log: Logger): Promise<string | null> {
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

/**
 * The report of an output just rewritten (rethreshold's new folder, retry-failed's merged shards):
 * where it went, or why it could not be built — never a failed command, as the data is written.
 */
export async function refreshReport(out: string | OutputLocation): Promise<{ file: string | null; error?: string }> {
  try {
    return { file: (await writeReport(out)).file };
  } catch (e) {
    return { file: null, error: describeError(e).message };
  }
}

export type { ReportData } from './collect.ts';
