import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { CapfiltError } from '../../core/errors.ts';
import type { ObjectRef } from '../storage/object-store.ts';
import { commitFile, tempPathFor } from './atomic.ts';

/**
 * Webdataset tar: consecutive entries sharing a key (`000420017.jpg`, `.txt`, `.json`) form a
 * sample. Entries are streamed into the file one sample at a time (images are fetched from the
 * staging store as they are written), so memory holds one image, not the shard.
 */
export interface TarSample {
  key: string;
  files: Array<{ ext: string; data: Uint8Array | string }>;
}

const MTIME = new Date(0);

export async function writeTarAtomic(finalPath: string, samples: AsyncIterable<TarSample> | Iterable<TarSample>): Promise<number> {
  const tmp = tempPathFor(finalPath);
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(tmp));
  let count = 0;
  try {
    for await (const s of samples) {
      for (const f of s.files) {
        const body = typeof f.data === 'string' ? Buffer.from(f.data, 'utf8') : Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength);
        await new Promise<void>((resolve, reject) => pack.entry({ name: `${s.key}.${f.ext}`, size: body.length, mtime: MTIME, mode: 0o644 }, body, (e) => (e ? reject(e) : resolve())));
      }
      count++;
    }
    pack.finalize();
    await out;
  } catch (e) {
    pack.destroy();
    await out.catch(() => undefined);
    await rm(tmp, { force: true });
    if (e instanceof CapfiltError) throw e;
    throw new CapfiltError('OUTPUT_WRITE_FAILED', `${finalPath}: ${(e as Error).message}`, { file: finalPath }, { cause: e });
  }
  await commitFile(tmp, finalPath);
  return count;
}

/** Every entry of a tar as name → bytes (for rethreshold and merging, which rewrite a shard). */
export async function readTarEntries(source: string | ObjectRef): Promise<Map<string, Buffer>> {
  const entries = new Map<string, Buffer>();
  const extract = tar.extract();
  const path = typeof source === 'string' ? source : source.store.locate(source.name);
  const input = typeof source === 'string' ? createReadStream(source) : Readable.from(source.store.stream(source.name));
  // The pipeline's failure (a missing file, a truncated tar) also ends the iteration below with
  // an error; keeping it here and awaiting `reading` on every path raises it once, coded, and
  // never leaves a rejected promise behind.
  let failure: unknown;
  const reading = pipeline(input, extract).catch((e: unknown) => {
    failure = e;
  });
  const invalid = (e: unknown) => new CapfiltError('OUTPUT_SHARD_INVALID', `${path}: ${(e as Error).message}`, { file: path }, { cause: e });
  try {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      entries.set(entry.header.name, Buffer.concat(chunks));
    }
  } catch (e) {
    await reading;
    throw invalid(failure ?? e);
  }
  await reading;
  if (failure !== undefined) throw invalid(failure);
  return entries;
}
