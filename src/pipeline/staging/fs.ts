import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CapfiltError } from '../../errors.ts';
import type { ShardState } from '../stages/types.ts';
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

export class FsStagingStore implements StagingStore {
  readonly kind = 'fs' as const;
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  private shardDir(runId: string, shardId: string): string {
    return join(this.dir, checkName('run id', runId), checkName('shard id', shardId));
  }

  async putState(state: ShardState): Promise<void> {
    const d = this.shardDir(state.shard.runId, state.shard.shardId);
    await mkdir(d, { recursive: true });
    const tmp = join(d, `.state.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
    await writeFile(tmp, JSON.stringify(state));
    await rename(tmp, join(d, 'state.json'));
  }

  async getState(runId: string, shardId: string): Promise<ShardState | null> {
    try {
      return JSON.parse(await readFile(join(this.shardDir(runId, shardId), 'state.json'), 'utf8')) as ShardState;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async putBlob(runId: string, shardId: string, name: string, bytes: Uint8Array): Promise<string> {
    const d = this.shardDir(runId, shardId);
    await mkdir(d, { recursive: true });
    await writeFile(join(d, `blob.${checkName('blob name', name)}`), bytes);
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
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new CapfiltError('STAGING_BLOB_MISSING', `staged image ${ref} is not in ${this.dir} (workers on other hosts need staging.backend=redis or a shared staging.dir)`, { ref });
      }
      throw e;
    }
  }

  async deleteShard(runId: string, shardId: string): Promise<void> {
    await rm(this.shardDir(runId, shardId), { recursive: true, force: true });
  }

  async sizeBytes(runId: string): Promise<number> {
    const walk = async (d: string): Promise<number> => {
      let entries;
      try {
        entries = await readdir(d, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw e;
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
