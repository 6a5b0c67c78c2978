import { describe, expect, it } from 'vitest';
import { Pacer, type Admission } from '../../../src/dashboard/pacing.ts';

const opts = { ratePerSec: 100, burst: 10, clientRatePerSec: 10, clientBurst: 3, maxWaitMs: 1000 };
const wait = (a: Admission) => ('waitMs' in a ? a.waitMs : -1);

describe('Pacer', () => {
  it('lets a burst through, then spaces one client at its own rate', () => {
    const p = new Pacer(opts);
    expect([0, 0, 0].map(() => wait(p.admit('a', 0)))).toEqual([0, 0, 0]);
    // The fourth request of the same instant waits one client interval (100 ms), the fifth two.
    expect(wait(p.admit('a', 0))).toBeCloseTo(100);
    expect(wait(p.admit('a', 0))).toBeCloseTo(200);
    // Another client is not held back by the first one's budget.
    expect(wait(p.admit('b', 0))).toBe(0);
  });

  it('a closed loop that waits for each answer is served at the client rate', () => {
    const p = new Pacer(opts);
    let now = 0;
    let served = 0;
    while (now < 10_000) {
      now += wait(p.admit('loop', now)) + 1;
      served++;
    }
    // 10 s at 10 req/s plus the initial burst of 3.
    expect(served).toBeGreaterThanOrEqual(100);
    expect(served).toBeLessThanOrEqual(104);
  });

  it('the server-wide rate bounds many clients together', () => {
    const p = new Pacer(opts);
    const waits = Array.from({ length: 30 }, (_, i) => wait(p.admit(`c${i}`, 0)));
    expect(waits.slice(0, 10)).toEqual(Array(10).fill(0));
    expect(waits[29]).toBeCloseTo(200);
  });

  it('refuses with a Retry-After once the wait would pass maxWaitMs, without taking a turn', () => {
    const p = new Pacer({ ...opts, maxWaitMs: 250 });
    for (let i = 0; i < 5; i++) p.admit('a', 0);
    const refused = p.admit('a', 0);
    expect(refused).toEqual({ refusedRetryAfterS: 1 });
    // The refusal reserved nothing: after the queue drains the client is served normally again.
    expect(wait(p.admit('a', 300))).toBe(0);
  });

  it('forgets idle clients when many addresses have been seen', () => {
    const p = new Pacer({ ...opts, ratePerSec: 1e9, burst: 1e9 });
    for (let i = 0; i < 10_000; i++) p.admit(`ip${i}`, 0);
    expect(p.clientCount).toBe(10_000);
    p.admit('late', 60_000);
    expect(p.clientCount).toBe(1);
  });

  it('a rate of 0 turns pacing off; negative or non-finite settings are refused', () => {
    const off = new Pacer({ ...opts, ratePerSec: 0 });
    expect(off.enabled).toBe(false);
    for (let i = 0; i < 100; i++) expect(wait(off.admit('a', 0))).toBe(0);
    expect(() => new Pacer({ ...opts, clientBurst: -1 })).toThrow(/clientBurst/);
    expect(() => new Pacer({ ...opts, maxWaitMs: Number.NaN })).toThrow(/maxWaitMs/);
  });
});
