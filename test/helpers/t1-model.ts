import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The t1 parity checkpoints (a tiny BLIP captioner + filter made with HF transformers) as one
 * model folder with captioner/ and filter/, each with the tokenizer over their vocabulary.
 * Real weights and the real runtime; their captions and scores carry no meaning.
 * Written into `dir` when given (created as needed), else into a new temporary folder.
 */
export function t1ModelDir(dir = mkdtempSync(join(tmpdir(), 'capfilt-t1-'))): string {
  const fixtures = fileURLToPath(new URL('../fixtures/parity/', import.meta.url));
  for (const role of ['captioner', 'filter']) {
    cpSync(join(fixtures, 't1', role), join(dir, role), { recursive: true });
    cpSync(join(fixtures, 't1-tokenizer'), join(dir, role), { recursive: true });
  }
  return dir;
}
