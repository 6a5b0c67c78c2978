import { describe, expect, it } from 'vitest';
import { HostLimiter } from '../../../src/io/host-limiter.ts';
import { ManualClock } from '../../helpers/manual-clock.ts';

/** One event-loop turn: lets a waiter that was (wrongly) woken run, without waiting for time. */
const turn = () => new Promise<void>((r) => setImmediate(r));

describe('HostLimiter', () => {
  it('bounds concurrency per host without limiting other hosts', async () => {
    const clock = new ManualClock();
    const limiter = new HostLimiter(2, 0, clock);
    const active = new Map<string, number>();
    let peakA = 0;
    let peakB = 0;
    const job = async (host: string) => {
      const release = await limiter.acquire(host);
      active.set(host, (active.get(host) ?? 0) + 1);
      peakA = Math.max(peakA, active.get('a') ?? 0);
      peakB = Math.max(peakB, active.get('b') ?? 0);
      await clock.sleep(20);
      active.set(host, active.get(host)! - 1);
      release();
    };
    const all = Promise.all([...Array(6)].map((_, i) => job(i % 2 ? 'a' : 'b')));
    // Two jobs per host hold a slot for 20 ms each: three rounds.
    await clock.whenSleeping(4);
    expect(clock.pending).toBe(4);
    await clock.advance(20);
    expect(clock.pending).toBe(2);
    await clock.advance(20);
    await all;
    expect(clock.now()).toBe(40);
    expect(peakA).toBe(2);
    expect(peakB).toBe(2);
    expect(limiter.size()).toBe(0);
  });

  it('spaces starts to one host by the minimum delay', async () => {
    const clock = new ManualClock(1_000);
    const limiter = new HostLimiter(10, 50, clock);
    const starts: number[] = [];
    const all = Promise.all([0, 1, 2].map(async () => {
      const release = await limiter.acquire('h');
      starts.push(clock.now());
      release();
    }));
    await clock.whenSleeping(2);
    // The first starts at once; the others reserved the next two turns, 50 ms apart.
    expect(starts).toEqual([1_000]);
    expect(clock.deadlines).toEqual([1_050, 1_100]);
    await clock.advance(49);
    expect(starts).toEqual([1_000]);
    await clock.advance(1);
    expect(starts).toEqual([1_000, 1_050]);
    await clock.advance(50);
    await all;
    expect(starts).toEqual([1_000, 1_050, 1_100]);
    expect(clock.sleeps).toEqual([50, 100]);
  });

  it('hands a released slot to the waiter, not to a caller arriving in between', async () => {
    const limiter = new HostLimiter(1, 0, new ManualClock());
    const first = await limiter.acquire('h');
    let thirdStarted = false;
    const second = limiter.acquire('h');
    first();
    const third = limiter.acquire('h').then((release) => {
      thirdStarted = true;
      return release;
    });
    const releaseSecond = await second;
    await turn();
    expect(thirdStarted).toBe(false);
    releaseSecond();
    (await third)();
    expect(limiter.size()).toBe(0);
  });

  it('removes an aborted waiter from the queue', async () => {
    const limiter = new HostLimiter(1, 0, new ManualClock());
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

  it('does not keep hosts that were released before their delay ended once the delay is over', async () => {
    const clock = new ManualClock();
    const limiter = new HostLimiter(1, 100, clock);
    // Each host's only request finishes at once, inside its 100 ms delay: its entry must stay
    // until the delay is over, and must not stay for ever after.
    for (let i = 0; i < 5000; i++) (await limiter.acquire(`h${i}.example`))();
    expect(limiter.size()).toBeGreaterThan(1000);
    await clock.advance(100);
    for (let i = 0; i < 5000; i++) (await limiter.acquire(`g${i}.example`))();
    await clock.advance(100);
    for (let i = 0; i < 5000; i++) (await limiter.acquire(`f${i}.example`))();
    expect(limiter.size()).toBeLessThanOrEqual(2 * 5000 + 1024);
    const h = limiter.acquire('f1.example');
    expect(clock.pending).toBe(1);
    await clock.advance(100);
    (await h)();
  });
});
