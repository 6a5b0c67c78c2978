import { describe, expect, it } from 'vitest';
import { realClock, sleep } from '../../../src/core/clock.ts';
import { ManualClock } from '../../helpers/manual-clock.ts';

describe('realClock', () => {
  it('reads the wall clock, and a sleep an abort cuts short rejects with the reason', async () => {
    const before = Date.now();
    const now = realClock.now();
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
    const done = new AbortController();
    done.abort(new Error('already'));
    await expect(sleep(60_000, done.signal)).rejects.toThrow('already');
    const ctl = new AbortController();
    const long = realClock.sleep(60_000, ctl.signal);
    ctl.abort(new Error('stop'));
    await expect(long).rejects.toThrow('stop');
  });
});

describe('ManualClock (test helper)', () => {
  it('wakes sleepers in deadline order only when advanced, and lets each continuation run first', async () => {
    const clock = new ManualClock(100);
    const log: string[] = [];
    void clock.sleep(30).then(() => log.push(`a@${clock.now()}`));
    void clock.sleep(10).then(async () => {
      log.push(`b@${clock.now()}`);
      await clock.sleep(10);
      log.push(`b2@${clock.now()}`);
    });
    await clock.advance(5);
    expect(log).toEqual([]);
    expect(clock.deadlines).toEqual([110, 130]);
    await clock.advance(25);
    expect(log).toEqual(['b@110', 'b2@120', 'a@130']);
    expect(clock.now()).toBe(130);
    expect(clock.sleeps).toEqual([30, 10, 10]);
  });

  it('drops an aborted sleeper, and drive() settles work that sleeps between real steps', async () => {
    const clock = new ManualClock();
    const ctl = new AbortController();
    const aborted = clock.sleep(50, ctl.signal);
    ctl.abort(new Error('gone'));
    await expect(aborted).rejects.toThrow('gone');
    expect(clock.pending).toBe(0);
    const work = (async () => {
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setImmediate(r));
        await clock.sleep(1000);
      }
      return clock.now();
    })();
    expect(await clock.drive(work)).toBe(3000);
  });
});
