import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { LocalObjectStore, openObjectStore, type ObjectStore } from './object-store.ts';
import type { S3Options } from './s3-client.ts';
import { isS3Url } from './s3-url.ts';

/**
 * Where a run's output lives: a local folder or an S3 prefix. The writers and rewriters work on a
 * local folder (tar, parquet, npy are written file by file, atomically); `withShard` gives them one:
 * the output folder itself when it is local, or a private scratch folder whose finished files are
 * then uploaded whole, the parquet last, so a reader of S3 never sees a partial shard and "the
 * parquet exists" still means "the shard is complete".
 */
export interface OutputLocation {
  readonly store: ObjectStore;
  /** The resolved folder or the s3:// URL: what run ids and messages are made of. */
  readonly location: string;
  readonly remote: boolean;
  /**
   * Runs `fn` on a local folder holding the shard's files (`fetch`: downloaded first, for a
   * rewrite; else none) and publishes what it wrote. `checkpoint()` publishes what is there now,
   * for a rewrite that must make an intermediate state durable (a no-op on a local folder).
   */
  withShard<T>(name: string, fn: (dir: string, checkpoint: () => Promise<void>) => Promise<T>, o?: { fetch?: boolean }): Promise<T>;
}

export function isRemoteLocation(location: string | null | undefined): boolean {
  return isS3Url(location);
}

/** A folder path resolved; an s3:// URL as given. */
export function resolveLocation(location: string): string {
  return isS3Url(location) ? location : resolve(location);
}

/** Every file of one shard, by the names the writers give them (src/io/writers). */
export function shardFileNames(name: string): string[] {
  return [
    `${name}.tar`,
    `filtered/${name}.tar`,
    `${name}_stats.json`,
    `${name}.parquet`,
    `embeddings/img_emb/img_emb_${name}.npy`,
    `embeddings/text_emb/text_emb_${name}.npy`,
    `embeddings/metadata/metadata_${name}.parquet`,
  ];
}

class LocalOutput implements OutputLocation {
  readonly remote = false;
  readonly store: LocalObjectStore;
  constructor(readonly location: string) {
    this.store = new LocalObjectStore(location);
  }
  withShard<T>(_name: string, fn: (dir: string, checkpoint: () => Promise<void>) => Promise<T>): Promise<T> {
    return fn(this.location, async () => undefined);
  }
}

/** An object's bytes, or null when it does not exist (one GET, no HEAD first). */
export async function readIfPresent(store: ObjectStore, name: string): Promise<Buffer | null> {
  try {
    return await store.read(name);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'S3_NO_SUCH_KEY' || code === 'ENOENT') return null;
    throw e;
  }
}

const digest = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** sha256 of a file, streamed (a shard's tar can be larger than is worth holding twice). */
async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Upload order: data first, a shard's stats next, its parquet (the "done" mark) last. */
function publishRank(name: string): number {
  if (/^\d+\.parquet$/.test(name)) return 3;
  if (/_stats\.json$/.test(name)) return 2;
  if (name.startsWith('embeddings/metadata/')) return 1;
  return 0;
}

class RemoteOutput implements OutputLocation {
  readonly remote = true;
  constructor(readonly location: string, readonly store: ObjectStore) {}

  private async scratch(): Promise<string> {
    return mkdtemp(join(tmpdir(), 'capfilt-out-'));
  }

  /** Downloads the named objects that exist; returns each one's digest. */
  private async fetch(dir: string, names: readonly string[]): Promise<Map<string, string>> {
    const have = new Map<string, string>();
    for (const n of names) {
      const bytes = await readIfPresent(this.store, n);
      if (!bytes) continue;
      await mkdir(dirname(join(dir, n)), { recursive: true });
      await writeFile(join(dir, n), bytes);
      have.set(n, digest(bytes));
    }
    return have;
  }

  /**
   * Uploads every file of `dir` that is new or changed since `seen` (updating it), in publish
   * order, then deletes the objects whose file is gone. Temp files of an interrupted write are skipped.
   */
  private async publish(dir: string, seen: Map<string, string>): Promise<void> {
    const files = (await new LocalObjectStore(dir).list()).map((f) => f.name).sort((a, b) => publishRank(a) - publishRank(b) || (a < b ? -1 : 1));
    const present = new Set(files);
    for (const name of files) {
      const d = await fileDigest(join(dir, name));
      if (seen.get(name) === d) continue;
      await this.store.putFile(name, join(dir, name));
      seen.set(name, d);
    }
    const gone = [...seen.keys()].filter((n) => !present.has(n));
    if (gone.length) {
      await this.store.delete(gone);
      for (const n of gone) seen.delete(n);
    }
  }

  async withShard<T>(name: string, fn: (dir: string, checkpoint: () => Promise<void>) => Promise<T>, o: { fetch?: boolean } = {}): Promise<T> {
    const dir = await this.scratch();
    try {
      const seen = o.fetch ? await this.fetch(dir, shardFileNames(name)) : new Map<string, string>();
      const result = await fn(dir, () => this.publish(dir, seen));
      await this.publish(dir, seen);
      // A fresh write replaces whatever an earlier attempt left of this shard (one batch delete).
      if (!o.fetch) await this.store.delete(shardFileNames(name).filter((n) => !seen.has(n)));
      return result;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

export function openOutput(location: string, s3: S3Options): OutputLocation {
  const loc = resolveLocation(location);
  return isS3Url(loc) ? new RemoteOutput(loc, openObjectStore(loc, s3)) : new LocalOutput(loc);
}
