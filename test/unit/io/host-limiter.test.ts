import { describe, expect, it } from 'vitest';
import { HostLimiter } from '../../../src/io/host-limiter.ts';

describe('HostLimiter', () => {
  it('bounds concurrency per host without limiting other hosts', async () => {
    const limiter = new HostLimiter(2, 0);
    const active = new Map<string, number>();
    let peakA = 0;
    let peakB = 0;
    const job = async (host: string) => {
      const release = await limiter.acquire(host);
      active.set(host, (active.get(host) ?? 0) + 1);
      peakA = Math.max(peakA, active.get('a') ?? 0);
      peakB = Math.max(peakB, active.get('b') ?? 0);
      await new Promise((r) => setTimeout(r, 20));
      active.set(host, active.get(host)! - 1);
      release();
    };
    await Promise.all([...Array(6)].map((_, i) => job(i % 2 ? 'a' : 'b')));
    expect(peakA).toBe(2);
    expect(peakB).toBe(2);
    expect(limiter.size()).toBe(0);
  });

  it('spaces starts to one host by the minimum delay', async () => {
    const limiter = new HostLimiter(10, 50);
    const starts: number[] = [];
    await Promise.all([0, 1, 2].map(async () => {
      const release = await limiter.acquire('h');
      starts.push(Date.now());
      release();
    }));
    expect(starts[2] - starts[0]).toBeGreaterThanOrEqual(95);
  });

  it('hands a released slot to the waiter, not to a caller arriving in between', async () => {
    const limiter = new HostLimiter(1, 0);
    const first = await limiter.acquire('h');
    let thirdStarted = false;
    const second = limiter.acquire('h');
    first();
    const third = limiter.acquire('h').then((release) => {
      thirdStarted = true;
      return release;
    });
    const releaseSecond = await second;
    await new Promise((r) => setTimeout(r, 10));
    expect(thirdStarted).toBe(false);
    releaseSecond();
    (await third)();
    expect(limiter.size()).toBe(0);
  });

  it('removes an aborted waiter from the queue', async () => {
    const limiter = new HostLimiter(1, 0);
    const release = await limiter.acquire('h');
    const ctl = new AbortController();
    const waiting = limiter.acquire('h', ctl.signal);
    ctl.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    release();
    const again = await limiter.acquire('h');
    again();
    expect(limiter.size()).toBe(0);
  });
});
