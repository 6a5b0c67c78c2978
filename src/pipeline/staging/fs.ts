import { mkdir, readFile, readdir, rename, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import type { ShardState } from '../../core/shard.ts';
import type { StagingStore } from './types.ts';

/**
 * Filesystem staging: <dir>/<runId>/<shardId>/state.json and one file per staged image.
 * State is written to a temporary file and renamed, so a killed worker leaves either the old or
 * the new state, never half of one. Refs are "fs:<runId>/<shardId>/<name>", relative to the
 * store's folder, so hosts that mount the same folder at different paths agree on them.
 */
const SAFE = /^[A-Za-z0-9._-]+$/;

function checkName(kind: string, v: string): string {
  if (!SAFE.test(v) || v === '.' || v === '..') throw new CapfiltError('STAGING_BLOB_MISSING', `staging ${kind} "${v}" is not a safe file name`);
  return v;
}

const isErrno = (e: unknown, code: string): boolean => (e as NodeJS.ErrnoException)?.code === code;

export class FsStagingStore implements StagingStore {
  readonly kind = 'fs' as const;
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  private shardDir(runId: string, shardId: string): string {
    return join(this.dir, checkName('run id', runId), checkName('shard id', shardId));
  }

  /**
   * An OS error of the folder (ENOTDIR where a folder must be, EACCES, ENOSPC, EROFS, ...) as
   * STAGING_UNAVAILABLE naming the folder and the OS reason. It is not a permanent code: a full
   * disk can be freed, so the shard's job is retried before the shard is failed with it.
   */
  private unavailable(doing: string, e: unknown): CapfiltError {
    const errno = (e as NodeJS.ErrnoException)?.code ?? null;
    const reason = `${e instanceof Error ? e.message : String(e)}${errno === 'EEXIST' || errno === 'ENOTDIR' ? ' (a file stands where a folder must be)' : ''}`;
    return new CapfiltError('STAGING_UNAVAILABLE', `staging folder ${this.dir} cannot be used (${doing}): ${reason}`, { dir: this.dir, errno }, { cause: e });
  }

  /** Writes a file through a temporary name and a rename; the temporary file is removed on failure. */
  private async writeAtomic(d: string, name: string, data: string | Uint8Array, doing: string): Promise<void> {
    const tmp = join(d, `.${name}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
    try {
      await mkdir(d, { recursive: true });
      await writeFile(tmp, data);
      await rename(tmp, join(d, name));
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw this.unavailable(doing, e);
    }
  }

  /**
   * Creates the folder and writes, reads back and removes a small file, so a run whose staging
   * folder is unusable stops before it plans, loads models or downloads anything.
   */
  async probe(): Promise<void> {
    const file = join(this.dir, `.probe.${process.pid}.${Math.random().toString(36).slice(2)}`);
    const bytes = 'capfilt staging probe';
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFile(file, bytes);
      if ((await readFile(file, 'utf8')) !== bytes) throw new Error(`${file} did not read back what was written`);
    } catch (e) {
      throw this.unavailable('checking it at start', e);
    } finally {
      await unlink(file).catch(() => undefined);
    }
  }

  async putState(state: ShardState): Promise<void> {
    const d = this.shardDir(state.shard.runId, state.shard.shardId);
    // The state file is renamed into place, so a killed worker leaves the old or the new state.
    await this.writeAtomic(d, 'state.json', JSON.stringify(state), `saving the state of shard ${state.shard.shardId}`);
  }

  async getState(runId: string, shardId: string): Promise<ShardState | null> {
    let text: string;
    try {
      text = await readFile(join(this.shardDir(runId, shardId), 'state.json'), 'utf8');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return null;
      throw this.unavailable(`reading the state of shard ${shardId}`, e);
    }
    return JSON.parse(text) as ShardState;
  }

  async putBlob(runId: string, shardId: string, name: string, bytes: Uint8Array): Promise<string> {
    const d = this.shardDir(runId, shardId);
    const file = join(d, `blob.${checkName('blob name', name)}`);
    try {
      await mkdir(d, { recursive: true });
      await writeFile(file, bytes);
    } catch (e) {
      throw this.unavailable(`staging image ${name} of shard ${shardId}`, e);
    }
    return `fs:${runId}/${shardId}/${name}`;
  }

  async getBlob(ref: string): Promise<Uint8Array> {
    const m = /^fs:([^/]+)\/([^/]+)\/([^/]+)$/.exec(ref);
    if (!m) throw new CapfiltError('STAGING_BLOB_MISSING', `staging ref "${ref}" is not a filesystem staging ref (is every worker using the same staging backend?)`, { ref });
    const file = join(this.shardDir(m[1], m[2]), `blob.${checkName('blob name', m[3])}`);
    try {
      const b = await readFile(file);
      return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) {
        throw new CapfiltError('STAGING_BLOB_MISSING', `staged image ${ref} is not in ${this.dir} (workers on other hosts need staging.backend=redis or s3, or a shared staging.dir)`, { ref });
      }
      throw this.unavailable(`reading staged image ${ref}`, e);
    }
  }

  async deleteShard(runId: string, shardId: string): Promise<void> {
    const d = this.shardDir(runId, shardId);
    try {
      await rm(d, { recursive: true, force: true });
    } catch (e) {
      throw this.unavailable(`deleting shard ${shardId}`, e);
    }
    // The run's folder goes with its last shard (rmdir refuses a folder that still holds one). The
    // coordinator also removes it at the end, but a shard recorded as done can still be deleting
    // its staging then, which left an empty run folder behind.
    await rmdir(join(this.dir, checkName('run id', runId))).catch(() => undefined);
  }

  async sizeBytes(runId: string): Promise<number> {
    const walk = async (d: string): Promise<number> => {
      let entries;
      try {
        entries = await readdir(d, { withFileTypes: true });
      } catch (e) {
        if (isErrno(e, 'ENOENT')) return 0;
        throw this.unavailable('measuring its size', e);
      }
      let total = 0;
      for (const e of entries) {
        const p = join(d, e.name);
        if (e.isDirectory()) total += await walk(p);
        else total += await stat(p).then((s) => s.size, () => 0);
      }
      return total;
    };
    return walk(join(this.dir, checkName('run id', runId)));
  }

  async close(): Promise<void> {}
}
