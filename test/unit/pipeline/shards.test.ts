import { describe, expect, it } from 'vitest';
import { fileTag, outputName, planShards, rowKey, runIdFor, shardId } from '../../../src/pipeline/shards.ts';

describe('shard planning', () => {
  const files = [
    { file: '/data/in/a.parquet', rows: 2500 },
    { file: '/data/in/b.parquet', rows: 1000 },
    { file: '/data/in/c.parquet', rows: 0 },
  ];

  it('splits each file into shards of N rows, numbered in feed order', () => {
    const shards = planShards('r1', '/data/in', files, 1000);
    expect(shards.map((s) => [s.outputName, s.indexInFile, s.rowStart, s.rowCount])).toEqual([
      ['00000', 0, 0, 1000],
      ['00001', 1, 1000, 1000],
      ['00002', 2, 2000, 500],
      ['00003', 0, 0, 1000],
    ]);
    expect(shards.reduce((n, s) => n + s.rowCount, 0)).toBe(3500);
  });

  it('gives the same ids when the same input is planned again, and different ids per file and index', () => {
    const a = planShards('r1', '/data/in', files, 1000).map((s) => s.shardId);
    const b = planShards('r1', '/data/in', files, 1000).map((s) => s.shardId);
    expect(a).toEqual(b);
    expect(new Set(a).size).toBe(a.length);
    expect(a[0]).toBe(shardId(fileTag('/data/in', '/data/in/a.parquet'), 0));
  });

  it('derives file tags from the path relative to the input root, so a moved dataset keeps its ids', () => {
    expect(fileTag('/data/in', '/data/in/a.parquet')).toBe(fileTag('/mnt/copy', '/mnt/copy/a.parquet'));
    expect(fileTag('/data/in/a.parquet', '/data/in/a.parquet')).toBe(fileTag('/x/a.parquet', '/x/a.parquet'));
    expect(fileTag('/data/in', '/data/in/a.parquet')).not.toBe(fileTag('/data/in', '/data/in/b.parquet'));
  });

  it('names outputs and row keys with fixed widths', () => {
    expect(outputName(42)).toBe('00042');
    expect(rowKey(42, 17, 1000)).toBe('000420017');
    expect(rowKey(3, 5, 100000)).toBe('0000300005');
    expect(runIdFor('/tmp/out')).toBe(runIdFor('/tmp/out/'));
    expect(runIdFor('/tmp/out')).not.toBe(runIdFor('/tmp/out2'));
  });
});
