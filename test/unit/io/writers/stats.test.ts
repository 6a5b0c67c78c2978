import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { shardStats, sumShardStats } from '../../../../src/io/writers/stats.ts';
import { record } from '../../../helpers/records-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-stats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const times = { startTime: 1000, endTime: 2000 };

describe('shard stats', () => {
  it('counts the kept rows written to embeddings/ only when rows carry CLIP embeddings', () => {
    const emb = { image: 'AAAAAA==', text: null };
    const rows = [
      record(0, { status: 'kept', clipEmbedding: emb }),
      record(1, { status: 'filtered', clipEmbedding: emb }),
      record(2, { status: 'kept', clipEmbedding: emb }),
    ];
    expect(shardStats('00000', rows, times).embeddings).toBe(2);
    expect(shardStats('00000', [record(0, { status: 'kept' })], times)).not.toHaveProperty('embeddings');
  });

  it('sums rules, labels and embeddings over the named shards; a missing shard adds nothing', async () => {
    writeFileSync(join(dir, '00000_stats.json'), JSON.stringify({ rejected_by: { itm: 2, clip: 1 }, labels: { circle: 3 }, embeddings: 4 }));
    writeFileSync(join(dir, '00001_stats.json'), JSON.stringify({ rejected_by: { clip: 5, top: 1 }, labels: { circle: 1, star: 2 }, embeddings: 1 }));
    writeFileSync(join(dir, '00009_stats.json'), JSON.stringify({ rejected_by: { clip: 100 } }));
    expect(await sumShardStats(dir, ['00000', '00001', '00002'])).toEqual({
      rejectedBy: { itm: 2, clip: 6, top: 1 },
      labelCounts: { circle: 4, star: 2 },
      embeddingsWritten: 5,
    });
    expect(await sumShardStats(dir, ['00009'])).toEqual({ rejectedBy: { clip: 100 }, labelCounts: null, embeddingsWritten: null });
  });

  it('refuses a stats file that is not JSON with a coded error', async () => {
    writeFileSync(join(dir, '00003_stats.json'), '{"rejected_by":');
    await expect(sumShardStats(dir, ['00003'])).rejects.toMatchObject({ code: 'OUTPUT_SHARD_INVALID' });
  });
});
