import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { CapfiltError } from '../../core/errors.ts';

export function isGzip(file: string): boolean {
  return file.toLowerCase().endsWith('.gz');
}

/**
 * The (decompressed) bytes of a file from `start`, as a stream of chunks. Seeking is only
 * possible in uncompressed files; a gzip stream is always read from its beginning.
 */
export async function* fileChunks(file: string, start = 0): AsyncGenerator<Buffer> {
  if (start > 0 && isGzip(file)) throw new RangeError(`${file}: cannot seek in a gzip file`);
  const raw = createReadStream(file, { start, highWaterMark: 256 * 1024 });
  const stream = isGzip(file) ? raw.pipe(createGunzip()) : raw;
  if (stream !== raw) raw.on('error', (e) => stream.destroy(e));
  try {
    for await (const chunk of stream) yield chunk as Buffer;
  } catch (e) {
    throw new CapfiltError('INPUT_UNREADABLE', `${file}: ${(e as Error).message}`, { file }, { cause: e });
  } finally {
    stream.destroy();
    raw.destroy();
  }
}
