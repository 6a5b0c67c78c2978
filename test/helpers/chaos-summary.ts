import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Collects the scenarios' summary lines (test/helpers/chaos-scenario.ts reportFault) and prints them together at the end. */
export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-chaos-summary-'));
  const file = join(dir, 'summary.txt');
  process.env.CAPFILT_CHAOS_SUMMARY = file;
  return () => {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      text = '(no scenario reported)\n';
    }
    process.stdout.write(`\n── chaos summary ──\n${text}`);
    rmSync(dir, { recursive: true, force: true });
  };
}
