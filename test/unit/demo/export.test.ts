import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captionMatchesScene } from '../../../src/demo/captions.ts';
import { exportDemoData, type ExportRow } from '../../../src/demo/export.ts';

const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

describe('exportDemoData', () => {
  it('writes one image per row and a complete pairs.jsonl with training texts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-demo-export-'));
    dirs.push(dir);
    const res = await exportDemoData({ n: 25, seed: 9, outDir: dir, size: 64, format: 'png', quality: 90, swappedPerRow: 2 });
    expect(res.rows).toBe(25);
    const rows = (await readFile(join(dir, 'pairs.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as ExportRow);
    expect(rows.map((r) => r.key)).toEqual(Array.from({ length: 25 }, (_, i) => `demo-${String(i).padStart(7, '0')}`));
    for (const r of rows) {
      expect((await stat(join(dir, r.file))).size).toBeGreaterThan(0);
      expect(r.file.endsWith('.png')).toBe(true);
      expect(r.swapped).toHaveLength(2);
      for (const t of r.captions) expect(captionMatchesScene(t, r.scene)).toBe(true);
      for (const t of r.swapped) expect(captionMatchesScene(t, r.scene)).toBe(false);
      expect(captionMatchesScene(r.web_text, r.scene)).toBe(r.label === 'correct');
    }
    const meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8'));
    expect(meta).toMatchObject({ seed: 9, n: 25, size: 64, format: 'png' });
  });
});
