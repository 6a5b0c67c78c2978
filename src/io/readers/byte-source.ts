import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { CapfiltError, isCapfiltError } from '../../core/errors.ts';
import { S3ObjectStore, type ObjectStore } from '../storage/object-store.ts';
import type { S3Options } from '../storage/s3-client.ts';
import { formatS3Url, isS3Url, parseS3Url } from '../storage/s3-url.ts';

/**
 * Where an input file's bytes come from. A location is a local path or an s3:// URL of one
 * object; the readers name files by location everywhere (planning, shards, messages), and only
 * here does an s3:// one become ranged or streamed GETs through the ObjectStore.
 */
export function isGzip(file: string): boolean {
  return file.toLowerCase().endsWith('.gz');
}

/** The store holding an s3:// object and its name there (the store's root is the object's "folder"). */
export function s3Object(location: string, s3: S3Options | undefined): { store: ObjectStore; name: string } {
  const { bucket, key } = parseS3Url(location);
  const slash = key.lastIndexOf('/');
  return { store: new S3ObjectStore(formatS3Url({ bucket, key: key.slice(0, slash + 1) }), requireS3(location, s3)), name: key.slice(slash + 1) };
}

export function requireS3(location: string, s3: S3Options | undefined): S3Options {
  if (!s3) throw new CapfiltError('CONFIG_INVALID', `${location}: an s3:// input needs the s3 options (config section s3)`, { location });
  return s3;
}

/**
 * The (decompressed) bytes of a file from `start`, as a stream of chunks. Seeking is only
 * possible in uncompressed files; a gzip stream is always read from its beginning. An S3 object
 * is streamed by one GET (resumed by range if the connection drops); its failures keep their
 * S3_* codes, everything else is INPUT_UNREADABLE.
 */
export async function* fileChunks(file: string, start = 0, s3?: S3Options): AsyncGenerator<Buffer> {
  if (start > 0 && isGzip(file)) throw new RangeError(`${file}: cannot seek in a gzip file`);
  let raw: Readable;
  if (isS3Url(file)) {
    const { store, name } = s3Object(file, s3);
    raw = Readable.from(store.stream(name, start), { objectMode: false });
  } else {
    raw = createReadStream(file, { start, highWaterMark: 256 * 1024 });
  }
  const stream = isGzip(file) ? raw.pipe(createGunzip()) : raw;
  if (stream !== raw) raw.on('error', (e) => stream.destroy(e));
  try {
    for await (const chunk of stream) yield chunk as Buffer;
  } catch (e) {
    if (isCapfiltError(e) && e.code.startsWith('S3_')) throw e;
    throw new CapfiltError('INPUT_UNREADABLE', `${file}: ${(e as Error).message}`, { file }, { cause: e });
  } finally {
    stream.destroy();
    raw.destroy();
  }
}
