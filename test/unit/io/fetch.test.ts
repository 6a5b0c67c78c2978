import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Fetcher, parseRetryAfter, userAgentString, type FetchOptions, type FetchResult } from '../../../src/io/fetch.ts';
import { startFixtureServer, type FixtureServer } from '../../helpers/fixture-server.ts';
import { ManualClock } from '../../helpers/manual-clock.ts';

let srv: FixtureServer;
const fetchers: Fetcher[] = [];
function fetcher(o: Partial<FetchOptions> = {}): Fetcher {
  const f = new Fetcher({
    ssrfAllowlist: ['127.0.0.1/32'],
    timeoutMs: 1500,
    headersTimeoutMs: 1000,
    bodyTimeoutMs: 400,
    retries: 0,
    retryBaseMs: 10,
    ...o,
  });
  fetchers.push(f);
  return f;
}
function failure(r: FetchResult) {
  if (r.ok) throw new Error(`expected a failure, got HTTP ${r.httpStatus}`);
  return r;
}

beforeAll(async () => {
  srv = await startFixtureServer();
});
afterAll(async () => {
  await Promise.all(fetchers.map((f) => f.close()));
  await srv.close();
});

describe('Fetcher', () => {
  it('downloads an image and reports status, final URL and size', async () => {
    const r = await fetcher().fetch(`${srv.url}/ok.jpg`);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Buffer.from(r.body).equals(srv.jpeg)).toBe(true);
    expect(r).toMatchObject({ httpStatus: 200, finalUrl: `${srv.url}/ok.jpg`, attempts: 1, contentType: 'image/jpeg', bytes: srv.jpeg.length });
  });

  it('identifies itself with version, URL and token', async () => {
    const r = await fetcher({ userAgentToken: 'team-x', userAgentUrl: 'https://example.org/crawler' }).fetch(`${srv.url}/ua`);
    expect(r.ok && Buffer.from(r.body).toString()).toMatch(/^capfilt\/\d+\.\d+\.\d+ \(\+https:\/\/example\.org\/crawler; team-x\)$/);
    expect(userAgentString({ userAgent: 'custom/1', userAgentToken: null, userAgentUrl: null })).toBe('custom/1');
  });

  it.each([
    ['noai', 'noai'],
    ['noimageai', 'noimageai'],
    ['noindex, nofollow', 'noindex'],
    ['noimageindex', 'noimageindex'],
    ['none', 'noindex'],
    ['capfilt: noai', 'capfilt: noai'],
    ['team-x: noimageai', 'team-x: noimageai'],
  ])('refuses X-Robots-Tag "%s" before reading the body', async (value, directive) => {
    const r = failure(await fetcher({ userAgentToken: 'team-x' }).fetch(`${srv.url}/robots?v=${encodeURIComponent(value)}`));
    expect(r.code).toBe('DOWNLOAD_OPTED_OUT');
    expect(r.detail).toBe(`X-Robots-Tag ${directive}`);
  });

  it('honours an opt-out sent on a redirect hop', async () => {
    const r = failure(await fetcher().fetch(`${srv.url}/redirect-to?to=%2Fok.jpg&robots=noimageai`));
    expect(r).toMatchObject({ code: 'DOWNLOAD_OPTED_OUT', httpStatus: 302 });
  });

  it('accepts opt-outs aimed at other agents, and all of them when the check is off', async () => {
    const f = fetcher();
    expect((await f.fetch(`${srv.url}/robots?v=${encodeURIComponent('otherbot: noai')}`)).ok).toBe(true);
    expect((await f.fetch(`${srv.url}/robots?v=nofollow`)).ok).toBe(true);
    expect((await fetcher({ disallowedHeaderDirectives: [] }).fetch(`${srv.url}/robots?v=noai`)).ok).toBe(true);
  });

  it('times out slow headers, stalled bodies and never-ending drips', async () => {
    const phases = fetcher({ headersTimeoutMs: 300, bodyTimeoutMs: 300, timeoutMs: 4000 });
    const total = fetcher({ timeoutMs: 800 });
    const t0 = Date.now();
    const [headers, stall, drip] = await Promise.all([
      phases.fetch(`${srv.url}/slow-headers?ms=5000`),
      phases.fetch(`${srv.url}/stall`),
      total.fetch(`${srv.url}/drip`),
    ]);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(failure(headers)).toMatchObject({ code: 'DOWNLOAD_TIMEOUT', detail: 'headers timeout' });
    expect(failure(stall)).toMatchObject({ code: 'DOWNLOAD_TIMEOUT', detail: 'body stalled (bodyTimeout)' });
    expect(failure(drip).code).toBe('DOWNLOAD_TIMEOUT');
    expect(failure(drip).detail).toContain('timeoutMs 800');
  });

  it('enforces the body size limit from Content-Length and while streaming', async () => {
    const f = fetcher({ maxBodyBytes: 1_000_000, timeoutMs: 5000 });
    expect(failure(await f.fetch(`${srv.url}/big?bytes=2000000`))).toMatchObject({ code: 'DOWNLOAD_TOO_LARGE' });
    expect(failure(await f.fetch(`${srv.url}/big-chunked`)).detail).toContain('maxBodyBytes 1000000');
    expect(failure(await f.fetch(`${srv.url}/endless`)).code).toBe('DOWNLOAD_TOO_LARGE');
    expect((await f.fetch(`${srv.url}/big?bytes=999999`)).ok).toBe(true);
  });

  it('follows redirect chains up to the limit and detects loops', async () => {
    const f = fetcher({ maxRedirects: 3 });
    const ok = await f.fetch(`${srv.url}/redirect/3`);
    expect(ok.ok && ok.finalUrl).toBe(`${srv.url}/ok.jpg`);
    expect(failure(await f.fetch(`${srv.url}/redirect/4`))).toMatchObject({ code: 'DOWNLOAD_REDIRECT_LIMIT', httpStatus: 302 });
    expect(failure(await f.fetch(`${srv.url}/loop/a`)).detail).toContain('redirect loop');
    expect(failure(await f.fetch(`${srv.url}/redirect-no-location`)).code).toBe('DOWNLOAD_REDIRECT_INVALID');
    expect(failure(await f.fetch(`${srv.url}/redirect-to?to=${encodeURIComponent('file:///etc/passwd')}`)).code).toBe('DOWNLOAD_REDIRECT_INVALID');
  });

  it('retries 5xx and 429 with backoff, honouring Retry-After', async () => {
    const clock = new ManualClock();
    const f = fetcher({ retries: 2, clock });
    const r = await clock.drive(f.fetch(`${srv.url}/flaky/a?fail=2&status=503`));
    expect(r.ok && r.attempts).toBe(3);
    // Exponential backoff with equal jitter on retryBaseMs 10: 5–10 ms, then 10–20 ms.
    const [first, second] = clock.sleeps;
    expect(clock.sleeps).toHaveLength(2);
    expect(first).toBeGreaterThanOrEqual(5);
    expect(first).toBeLessThanOrEqual(10);
    expect(second).toBeGreaterThanOrEqual(10);
    expect(second).toBeLessThanOrEqual(20);
    // The waits count in the result's time (the requests themselves take no time on this clock).
    expect(r.ms).toBe(first + second);
    const after = await clock.drive(f.fetch(`${srv.url}/flaky/b?fail=1&status=429&retry-after=1`));
    expect(after.ok && after.attempts).toBe(2);
    expect(clock.sleeps.slice(2)).toEqual([1000]);
    expect(after.ms).toBe(1000);
    expect(failure(await clock.drive(f.fetch(`${srv.url}/status/500`)))).toMatchObject({ code: 'DOWNLOAD_HTTP_STATUS', httpStatus: 500, attempts: 3 });
    expect(srv.hits.get('/status/500')).toBe(3);
    expect(clock.sleeps).toHaveLength(5);
  });

  it('does not retry 404, and gives up on a Retry-After beyond the cap', async () => {
    const f = fetcher({ retries: 3, maxRetryAfterMs: 5000 });
    expect(failure(await f.fetch(`${srv.url}/status/404`))).toMatchObject({ code: 'DOWNLOAD_HTTP_STATUS', detail: 'HTTP 404', attempts: 1 });
    const r = failure(await f.fetch(`${srv.url}/status/429?retry-after=3600`));
    expect(r.attempts).toBe(1);
    expect(r.detail).toContain('exceeds maxRetryAfterMs');
  });

  it('retries a reset connection, and reports one that keeps failing', async () => {
    const f = fetcher({ retries: 1 });
    const r = await f.fetch(`${srv.url}/reset-once/x`);
    expect(r.ok && r.attempts).toBe(2);
    expect(failure(await f.fetch(`${srv.url}/reset`))).toMatchObject({ code: 'DOWNLOAD_NETWORK', attempts: 2 });
    expect(failure(await fetcher().fetch('http://127.0.0.1:1/x.jpg')).code).toBe('DOWNLOAD_NETWORK');
  });

  it('decodes gzip and raw deflate, caps decoded size, rejects corrupt or unknown encodings', async () => {
    const f = fetcher({ maxDecodedBytes: 1_000_000 });
    for (const p of ['/gzip', '/deflate-raw']) {
      const r = await f.fetch(`${srv.url}${p}`);
      expect(r.ok && Buffer.from(r.body).equals(srv.jpeg)).toBe(true);
    }
    expect(failure(await f.fetch(`${srv.url}/gzip-bomb`))).toMatchObject({ code: 'DOWNLOAD_TOO_LARGE' });
    expect(failure(await f.fetch(`${srv.url}/gzip-corrupt`)).code).toBe('DOWNLOAD_ENCODING_INVALID');
    expect(failure(await f.fetch(`${srv.url}/compress`)).code).toBe('DOWNLOAD_ENCODING_INVALID');
  });

  it('reports unresolvable hosts and non-http URLs', async () => {
    const f = fetcher({ resolver: async (host) => {
      const e: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${host}`);
      e.code = 'ENOTFOUND';
      throw e;
    } });
    expect(failure(await f.fetch('http://no-such-host.invalid/a.jpg')).code).toBe('DOWNLOAD_DNS_FAILED');
    expect(failure(await f.fetch('ftp://example.com/a.jpg')).code).toBe('INPUT_URL_INVALID');
    expect(failure(await f.fetch('not a url')).code).toBe('INPUT_URL_INVALID');
  });

  it('keeps per-host concurrency and the minimum delay between requests to one host', async () => {
    const clock = new ManualClock();
    const f = fetcher({ perHostConcurrency: 1, perHostDelayMs: 80, clock });
    const results = await clock.drive(Promise.all([0, 1, 2, 3].map(() => f.fetch(`${srv.url}/hold.jpg?ms=30`))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(srv.maxConcurrent('/hold.jpg')).toBe(1);
    // Request i starts i × 80 ms after the first: each later one waited out the rest of its turn.
    expect(clock.sleeps).toEqual([80, 80, 80]);
    expect(clock.now()).toBe(240);
    expect(results.map((r) => r.ms).sort((a, b) => a - b)).toEqual([0, 80, 160, 240]);
    // Two slots, server-held responses (100 ms of real time each): six requests take three rounds.
    const two = fetcher({ perHostConcurrency: 2 });
    const t0 = Date.now();
    await Promise.all([0, 1, 2, 3, 4, 5].map(() => two.fetch(`${srv.url}/hold2.jpg?ms=100`)));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(srv.maxConcurrent('/hold2.jpg')).toBe(2);
  });

  it('does not count the wait for a per-host slot against the request timeout', async () => {
    const f = fetcher({ perHostConcurrency: 1, timeoutMs: 500, headersTimeoutMs: 450 });
    const results = await Promise.all([0, 1, 2].map(() => f.fetch(`${srv.url}/hold3.jpg?ms=250`)));
    expect(results.map((r) => r.ok)).toEqual([true, true, true]);
    expect(Math.max(...results.map((r) => r.ms))).toBeGreaterThanOrEqual(700);
  });

  it('stops when the caller aborts', async () => {
    const ctl = new AbortController();
    const before = srv.hits.get('/slow-headers') ?? 0;
    const pending = fetcher({ timeoutMs: 5000, headersTimeoutMs: 5000 }).fetch(`${srv.url}/slow-headers?ms=3000`, ctl.signal);
    // Aborted once the request is at the server, waiting for headers that come only after 3 s.
    await vi.waitFor(() => expect(srv.hits.get('/slow-headers') ?? 0).toBeGreaterThan(before));
    ctl.abort();
    const r = failure(await pending);
    expect(r.code).toBe('DOWNLOAD_ABORTED');
  });

  it('parses Retry-After seconds and dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000 + 5000).toUTCString(), 10_000)).toBe(5000);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});
