import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeShardFiles } from '../../../src/io/writers/shard.ts';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { readTarEntries } from '../../../src/io/writers/tar.ts';
import { rethreshold } from '../../../src/run/rethreshold.ts';
import { scored } from '../../helpers/records-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-rethreshold-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('rethreshold', () => {
  it('a row that now passes but whose image the old output never kept is filtered with RETHRESHOLD_IMAGE_MISSING, and the shard is written without it', async () => {
    const out = join(dir, 'out');
    const images = { get: async () => new Uint8Array([1, 2, 3]) };
    // Written without filtered images: row 1's image is in no tar.
    await writeShardFiles([scored(0, 0.9, 0.1, 'kept'), scored(1, 0.3, 0.2, 'filtered')], { outDir: out, name: '00000', images, startTime: Date.now(), keepFilteredImages: false });
    const s = await rethreshold(out, join(dir, 'to'), { itmThreshold: 0.25, itcThreshold: null, selection: 'original-first', keepTop: null });
    expect(s).toMatchObject({ rows: 2, kept: 1, filtered: 1 });
    const rows = await readShardParquet(join(dir, 'to', '00000.parquet'));
    // The parquet keeps what is known of the image; no tar claims to hold it.
    expect(rows[1]).toMatchObject({ status: 'filtered', reason: 'RETHRESHOLD_IMAGE_MISSING', selected: null, image: { sha256: scored(1, 0, 0, 'filtered').image!.sha256 } });
    expect([...(await readTarEntries(join(dir, 'to', '00000.tar'))).keys()].filter((k) => k.endsWith('.jpg'))).toEqual([`${rows[0].key}.jpg`]);
    expect(existsSync(join(dir, 'to', 'filtered', '00000.tar'))).toBe(false);
  });
});
