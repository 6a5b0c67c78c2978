import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, paginateListObjectsV2, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { CapfiltError } from '../../core/errors.ts';
import { commitFile, tempPathFor, writeFileAtomic } from '../writers/atomic.ts';
import { s3Client, s3Error, type S3Options } from './s3-client.ts';
import { asPrefix, formatS3Url, isS3Url, joinS3, parseS3Url, type S3Location } from './s3-url.ts';

export interface StoredObject {
  /** Path below the store's root, "/"-separated: "00001.parquet", "filtered/00001.tar". */
  name: string;
  size: number;
}

/**
 * A folder of whole objects: a local directory or an S3 prefix. Every write is all-or-nothing
 * (a local temp file renamed into place; an S3 PUT or multipart upload, which S3 shows only once
 * complete), so a reader never sees part of an object. Names are relative and "/"-separated.
 */
export interface ObjectStore {
  readonly kind: 'fs' | 's3';
  /** The root, for messages: a resolved folder or s3://bucket/prefix/. */
  readonly location: string;
  /** The URL or path of one object, for messages and for logs a user copies. */
  locate(name: string): string;
  /** Objects below `under` ("" = everything), recursively, sorted by name. */
  list(under?: string): Promise<StoredObject[]>;
  /** Size in bytes, or null when there is no such object. */
  size(name: string): Promise<number | null>;
  read(name: string): Promise<Buffer>;
  /** Bytes [start, end) of an object. */
  readRange(name: string, start: number, end: number): Promise<Buffer>;
  /** The object's bytes from `start` as a stream of chunks (an interrupted S3 read resumes where it stopped). */
  stream(name: string, start?: number): AsyncGenerator<Buffer>;
  put(name: string, data: string | Uint8Array): Promise<void>;
  /** Copies a local file in as `name` (the file is left where it is). */
  putFile(name: string, localPath: string): Promise<void>;
  /** Removes objects; absent ones are not an error. */
  delete(names: string[]): Promise<void>;
}

export class LocalObjectStore implements ObjectStore {
  readonly kind = 'fs' as const;
  readonly location: string;
  constructor(dir: string) {
    this.location = resolve(dir);
  }
  locate(name: string): string {
    return join(this.location, ...name.split('/'));
  }
  async list(under = ''): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      for (const d of entries) {
        const p = join(dir, d.name);
        // Temp files of an interrupted write are not objects.
        if (d.name.startsWith('.') && d.name.endsWith('.tmp')) continue;
        if (d.isDirectory()) await walk(p);
        else if (d.isFile()) out.push({ name: relative(this.location, p).split(sep).join('/'), size: (await stat(p)).size });
      }
    };
    await walk(under ? this.locate(under) : this.location);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  async size(name: string): Promise<number | null> {
    return stat(this.locate(name)).then((s) => (s.isFile() ? s.size : null), () => null);
  }
  read(name: string): Promise<Buffer> {
    return readFile(this.locate(name));
  }
  async readRange(name: string, start: number, end: number): Promise<Buffer> {
    const fh = await open(this.locate(name), 'r');
    try {
      const buf = Buffer.alloc(end - start);
      const { bytesRead } = await fh.read(buf, 0, buf.length, start);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
  async *stream(name: string, start = 0): AsyncGenerator<Buffer> {
    for await (const chunk of createReadStream(this.locate(name), { start, highWaterMark: 256 * 1024 })) yield chunk as Buffer;
  }
  async put(name: string, data: string | Uint8Array): Promise<void> {
    await mkdir(dirname(this.locate(name)), { recursive: true });
    await writeFileAtomic(this.locate(name), data);
  }
  async putFile(name: string, localPath: string): Promise<void> {
    const dest = this.locate(name);
    await mkdir(dirname(dest), { recursive: true });
    const tmp = tempPathFor(dest);
    await copyFile(localPath, tmp);
    await commitFile(tmp, dest);
  }
  async delete(names: string[]): Promise<void> {
    for (const n of names) await rm(this.locate(n), { force: true });
  }
}

export class S3ObjectStore implements ObjectStore {
  readonly kind = 's3' as const;
  readonly location: string;
  private readonly root: S3Location;
  private readonly client: S3Client;
  constructor(url: string, private readonly o: S3Options) {
    this.root = asPrefix(parseS3Url(url));
    this.location = formatS3Url(this.root);
    this.client = s3Client(o);
  }
  private key(name: string): string {
    return joinS3(this.root, name).key;
  }
  locate(name: string): string {
    return formatS3Url(joinS3(this.root, name));
  }
  async list(under = ''): Promise<StoredObject[]> {
    const prefix = under ? asPrefix(joinS3(this.root, under)).key : this.root.key;
    const out: StoredObject[] = [];
    try {
      for await (const page of paginateListObjectsV2({ client: this.client }, { Bucket: this.root.bucket, Prefix: prefix })) {
        for (const c of page.Contents ?? []) if (c.Key && !c.Key.endsWith('/')) out.push({ name: c.Key.slice(this.root.key.length), size: c.Size ?? 0 });
      }
    } catch (e) {
      throw s3Error(e, 'list', formatS3Url({ bucket: this.root.bucket, key: prefix }));
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  async size(name: string): Promise<number | null> {
    try {
      const h = await this.client.send(new HeadObjectCommand({ Bucket: this.root.bucket, Key: this.key(name) }));
      return h.ContentLength ?? 0;
    } catch (e) {
      const err = s3Error(e, 'head', this.locate(name));
      if (err.code === 'S3_NO_SUCH_KEY') return null;
      throw err;
    }
  }
  private async get(name: string, range?: string): Promise<Buffer> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.root.bucket, Key: this.key(name), ...(range ? { Range: range } : {}) }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (e) {
      throw s3Error(e, 'get', this.locate(name));
    }
  }
  read(name: string): Promise<Buffer> {
    return this.get(name);
  }
  async readRange(name: string, start: number, end: number): Promise<Buffer> {
    if (end <= start) return Buffer.alloc(0);
    return this.get(name, `bytes=${start}-${end - 1}`);
  }
  async *stream(name: string, start = 0): AsyncGenerator<Buffer> {
    let offset = start;
    // A long read can lose its connection; the SDK retries only the request, so resume by range.
    for (let attempt = 1; ; attempt++) {
      let body: AsyncIterable<Uint8Array> | undefined;
      try {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.root.bucket, Key: this.key(name), ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}) }));
        body = r.Body as unknown as AsyncIterable<Uint8Array>;
        for await (const chunk of body) {
          offset += chunk.length;
          attempt = 1;
          yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
        }
        return;
      } catch (e) {
        const err = s3Error(e, 'get', this.locate(name));
        if (err.code !== 'S3_UNAVAILABLE' || attempt >= this.o.maxAttempts) throw err;
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
  }
  private async upload(name: string, body: Uint8Array | string | NodeJS.ReadableStream): Promise<void> {
    try {
      await new Upload({
        client: this.client,
        params: { Bucket: this.root.bucket, Key: this.key(name), Body: body as never },
        partSize: this.o.partSizeMiB * 1024 * 1024,
        queueSize: this.o.uploadConcurrency,
        // A failed multipart upload is aborted, so no orphaned parts are billed.
        leavePartsOnError: false,
      }).done();
    } catch (e) {
      throw s3Error(e, 'put', this.locate(name));
    }
  }
  put(name: string, data: string | Uint8Array): Promise<void> {
    return this.upload(name, data);
  }
  async putFile(name: string, localPath: string): Promise<void> {
    const size = (await stat(localPath)).size;
    // Small files go as one buffer (one PUT); larger ones stream through multipart.
    if (size <= this.o.partSizeMiB * 1024 * 1024) return this.upload(name, await readFile(localPath));
    return this.upload(name, createReadStream(localPath));
  }
  async delete(names: string[]): Promise<void> {
    for (let i = 0; i < names.length; i += 1000) {
      const batch = names.slice(i, i + 1000);
      try {
        const r = await this.client.send(new DeleteObjectsCommand({ Bucket: this.root.bucket, Delete: { Objects: batch.map((n) => ({ Key: this.key(n) })), Quiet: true } }));
        const failed = (r.Errors ?? []).filter((x) => x.Code !== 'NoSuchKey');
        if (failed.length) throw new CapfiltError(failed[0].Code === 'AccessDenied' ? 'S3_ACCESS_DENIED' : 'S3_UNAVAILABLE', `delete ${this.location}: ${failed.length} objects not deleted, first ${failed[0].Key}: ${failed[0].Code} ${failed[0].Message ?? ''}`, { url: this.location });
      } catch (e) {
        throw s3Error(e, 'delete', this.location);
      }
    }
  }
}

/** One object of a store: what readers of output files take when the file may be on S3. */
export interface ObjectRef {
  store: ObjectStore;
  name: string;
}

/** A folder path as a store; a store as itself (for readers that take either). */
export function storeOf(dir: string | ObjectStore): ObjectStore {
  return typeof dir === 'string' ? new LocalObjectStore(dir) : dir;
}

/** The store for a folder path or an s3:// URL. */
export function openObjectStore(location: string, s3: S3Options): ObjectStore {
  return isS3Url(location) ? new S3ObjectStore(location, s3) : new LocalObjectStore(location);
}
