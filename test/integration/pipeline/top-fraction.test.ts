import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../../../src/demo/prng.ts';
import { MemoryTopFractionSketch, RedisTopFractionSketch, ScoreHistogram, topFractionKey } from '../../../src/pipeline/top-fraction.ts';
import { REDIS_URL, deletePrefix, keysUnder, uniquePrefix } from '../../helpers/redis-cleanup.ts';

/** The run's shared CLIP-score histogram in a real Redis, written by several connections at once. */
const prefix = uniquePrefix('top-fraction');
const clients: Redis[] = [];
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await deletePrefix(prefix);
});

function client(): Redis {
  const c = new Redis(REDIS_URL);
  clients.push(c);
  return c;
}

describe('RedisTopFractionSketch', () => {
  it('merges the shards of concurrent workers exactly, counts a retried shard once, in one key with a TTL', async () => {
    const key = topFractionKey(prefix, 'run1');
    const workers = [new RedisTopFractionSketch(client(), key), new RedisTopFractionSketch(client(), key), new RedisTopFractionSketch(client(), key)];
    const rng = new Rng(11);
    const shards = Array.from({ length: 12 }, (_, i) => ({ id: `s${i}`, scores: Array.from({ length: 50 + i }, () => rng.next() * 0.8 - 0.2) }));
    await Promise.all(shards.map((s, i) => workers[i % 3].add(s.id, s.scores)));
    // A shard retried after a crash, on another worker, adds nothing.
    await workers[1].add(shards[0].id, shards[0].scores);
    const merged = await workers[2].read();
    const memory = new MemoryTopFractionSketch();
    for (const s of shards) await memory.add(s.id, s.scores);
    const expected = await memory.read();
    expect(merged.total).toBe(shards.reduce((n, s) => n + s.scores.length, 0));
    expect(new Map([...merged.counts].sort())).toEqual(new Map([...expected.counts].sort()));
    for (const f of [0.1, 0.3, 0.9]) expect(merged.topThreshold(f)).toBe(expected.topThreshold(f));

    const r = client();
    expect(await keysUnder(r, prefix)).toEqual([key]);
    expect(await r.ttl(key)).toBeGreaterThan(0);
    await workers[0].reset();
    expect((await workers[0].read()).total).toBe(0);
  });

  it('add returns the merged histogram including the shard just added', async () => {
    const s = new RedisTopFractionSketch(client(), topFractionKey(prefix, 'run2'));
    await s.add('a', [0.1, 0.2, 0.3]);
    const h = await s.add('b', [0.4]);
    expect(h.total).toBe(4);
    expect(h.topThreshold(0.25)).toBeCloseTo(ScoreHistogram.of([0.4]).topThreshold(1)!, 12);
  });
});
