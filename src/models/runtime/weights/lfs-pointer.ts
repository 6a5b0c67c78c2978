import { closeSync, openSync, readSync } from 'node:fs';
import { CapfiltError } from '../../../core/errors.ts';

/** The first line of every Git LFS pointer file (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md). */
const POINTER_START = 'version https://git-lfs.github.com/spec/';

/**
 * Throws WEIGHTS_LFS_POINTER when `file` is a Git LFS pointer instead of the checkpoint it
 * stands for: what a `git clone` of a Hugging Face repo without git-lfs leaves, a 130-byte text
 * whose header would otherwise read as a nonsensical length. `head`: the file's first bytes
 * when the caller has read them already.
 */
export function refuseLfsPointer(file: string, head?: Uint8Array): void {
  let bytes = head;
  if (!bytes) {
    const fd = openSync(file, 'r');
    try {
      const buf = Buffer.alloc(POINTER_START.length);
      bytes = buf.subarray(0, readSync(fd, buf, 0, buf.length, 0));
    } finally {
      closeSync(fd);
    }
  }
  if (Buffer.from(bytes.subarray(0, POINTER_START.length)).toString('latin1') !== POINTER_START) return;
  throw new CapfiltError(
    'WEIGHTS_LFS_POINTER',
    `${file}: a Git LFS pointer, not the weights (the repo was cloned without git-lfs): run \`git lfs pull\` in it, or fetch the model with \`capfilt models pull\``,
    { file },
  );
}
