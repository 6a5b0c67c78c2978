/**
 * Float32Pool: which free buffer a take reuses, that arrays are checked on the way back, and
 * that free buffers not asked for again go.
 */
import { describe, expect, it } from 'vitest';
import { Float32Pool } from '../../../../src/models/runtime/buffers.ts';

describe('Float32Pool', () => {
  it('reuses a free buffer of at least the length and at most twice it', () => {
    const pool = new Float32Pool();
    const full = pool.take(800);
    const buffer = full.buffer;
    pool.give(full);
    // A batch short of full reuses the full batch's buffer, as a view of exactly its length.
    const part = pool.take(500);
    expect(part.length).toBe(500);
    expect(part.buffer).toBe(buffer);
    pool.give(part);
    // A request under half the capacity gets its own buffer instead of pinning the large one.
    const small = pool.take(300);
    expect(small.buffer).not.toBe(buffer);
    expect(pool.freeBytes).toBe(800 * 4);
    // Larger than every free buffer: a new one.
    const big = pool.take(801);
    expect(big.buffer).not.toBe(buffer);
    pool.give(small, big);
  });

  it('picks the smallest free buffer that fits', () => {
    const pool = new Float32Pool();
    const [a, b, c] = [pool.take(120), pool.take(100), pool.take(150)];
    pool.give(a, b, c);
    expect(pool.take(90).buffer).toBe(b.buffer);
    expect(pool.take(90).buffer).toBe(a.buffer);
    expect(pool.take(90).buffer).toBe(c.buffer);
  });

  it('keeps the contents a buffer was given back with (callers fill what they need)', () => {
    const pool = new Float32Pool();
    const a = pool.take(4);
    a.set([1, 2, 3, 4]);
    pool.give(a);
    expect(Array.from(pool.take(3))).toEqual([1, 2, 3]);
  });

  it('rejects arrays it did not hand out and arrays given back twice', () => {
    const pool = new Float32Pool();
    expect(() => pool.give(new Float32Array(8))).toThrow(/did not hand out, or gave back twice/);
    const a = pool.take(8);
    pool.give(a);
    expect(() => pool.give(a)).toThrow(/gave back twice/);
    expect(() => pool.take(-1)).toThrow(/non-negative integer/);
  });

  it('drops a free buffer that is not taken again within idleMs', () => {
    let t = 0;
    const pool = new Float32Pool({ idleMs: 1000, now: () => t });
    const [a, b] = [pool.take(1000), pool.take(10)];
    pool.give(a, b);
    expect(pool.freeBytes).toBe(4040);
    expect(pool.outstandingBytes).toBe(0);
    t = 600;
    // Taken again in time: a is reused and, given back, its clock restarts.
    const again = pool.take(1000);
    expect(again.buffer).toBe(a.buffer);
    pool.give(again);
    t = 1500;
    // b has waited 1500 ms and goes; a, given back at 600, stays.
    expect(pool.take(1000).buffer).toBe(a.buffer);
    expect(pool.freeBytes).toBe(0);
    pool.clear();
  });

  it('clear drops every free buffer; arrays still out can be given back', () => {
    const pool = new Float32Pool();
    const a = pool.take(100);
    pool.give(pool.take(50));
    pool.clear();
    expect(pool.freeBytes).toBe(0);
    pool.give(a);
    expect(pool.freeBytes).toBe(400);
  });
});
