/**
 * Parity check of a model runtime against a vectors folder in the `../shared/parity` format:
 *   npm run parity -- <vectors-dir>
 * The folder decides the family: `model/config.json` of a CLIPModel → CLIP (parity/clip.ts);
 * otherwise the BLIP captioner/filter layout (parity/blip.ts). Each prints the max abs error per
 * output and exits 1 when any output is beyond tolerance or ids differ. Every size, id, tolerance
 * and file name comes from vectors.json and the model configs, never from this code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isClipConfig } from '../src/models/clip/config.ts';
import { runBlipParity } from './parity/blip.ts';
import { runClipParity } from './parity/clip.ts';
import type { ParityReport } from './parity/common.ts';

export type { ParityLine, ParityReport } from './parity/common.ts';

function isClipFolder(dir: string): boolean {
  const cfg = join(dir, 'model', 'config.json');
  return existsSync(cfg) && isClipConfig(JSON.parse(readFileSync(cfg, 'utf8')));
}

export async function runParity(vectorsDir: string, print: (line: string) => void = console.log): Promise<ParityReport> {
  return isClipFolder(vectorsDir) ? runClipParity(vectorsDir, print) : runBlipParity(vectorsDir, print);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const dir = process.argv[2];
  if (!dir || !existsSync(join(dir, 'vectors.json'))) {
    console.error('usage: npm run parity -- <vectors-dir>   (a folder holding vectors.json)');
    process.exit(2);
  }
  const report = await runParity(resolve(dir));
  process.exit(report.ok ? 0 : 1);
}
