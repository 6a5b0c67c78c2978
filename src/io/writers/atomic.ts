import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';

/**
 * Output files appear whole or not at all: each is written under a temporary name in the same
 * folder (same filesystem, so rename is atomic) and renamed into place. A killed writer leaves
 * only `.tmp` files, which a rerun overwrites and `removeTemps` sweeps.
 */
export function tempPathFor(finalPath: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

export async function commitFile(tempPath: string, finalPath: string): Promise<void> {
  try {
    await rename(tempPath, finalPath);
  } catch (e) {
    await rm(tempPath, { force: true });
    throw new CapfiltError('OUTPUT_WRITE_FAILED', `${finalPath}: rename from temporary file failed: ${(e as Error).message}`, { file: finalPath }, { cause: e });
  }
}

export async function writeFileAtomic(finalPath: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPathFor(finalPath);
  try {
    await writeFile(tmp, data);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new CapfiltError('OUTPUT_WRITE_FAILED', `${finalPath}: ${(e as Error).message}`, { file: finalPath }, { cause: e });
  }
  await commitFile(tmp, finalPath);
}
