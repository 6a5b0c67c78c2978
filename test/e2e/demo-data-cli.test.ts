import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const bin = new URL('../../bin/capfilt.js', import.meta.url).pathname;
const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

describe('capfilt demo-data export', () => {
  it('writes the requested rows and prints a JSON summary', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-demo-cli-'));
    dirs.push(dir);
    const { stdout } = await run(process.execPath, [bin, 'demo-data', 'export', '--n', '4', '--seed', '3', '--size', '48', '--out', dir]);
    expect(JSON.parse(stdout.trim())).toMatchObject({ rows: 4, out: dir });
    expect((await readdir(join(dir, 'images'))).sort()).toEqual(['demo-0000000.jpg', 'demo-0000001.jpg', 'demo-0000002.jpg', 'demo-0000003.jpg']);
  });

  it('rejects a bad option with a coded usage error and exit status 2', async () => {
    const err = await run(process.execPath, [bin, 'demo-data', 'export', '--format', 'gif', '--out', join(tmpdir(), 'never')]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toContain('CLI_USAGE: --format must be jpeg or png, got "gif"');
    const mix = await run(process.execPath, [bin, 'demo-data', 'export', '--mix', 'correct=x', '--out', join(tmpdir(), 'never')]).catch((e: unknown) => e);
    expect((mix as { stderr: string }).stderr).toContain('--mix entry "correct=x"');
  });
});
