import { createServer, type Server, type Socket } from 'node:net';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/core/errors.ts';
import { Fetcher, type FetchOptions, type FetchResult } from '../../src/io/fetch.ts';

/**
 * Hostile HTTP servers beyond the I/O fixture server's cases (test/unit/io covers single-layer
 * gzip bombs, never-ending and slow-drip bodies, stalls, redirect loops and the basic SSRF
 * forms): layered and brotli bombs in Content-Encoding, absurd headers (one huge, thousands of
 * small ones, a never-ending header block), and DNS answers that change between lookups
 * (rebinding). A raw TCP server writes exactly the bytes a hostile server would.
 */
let server: Server;
let port: number;
let jpeg: Buffer;
const bombs: { gzipGzip: Buffer; br: Buffer; stacked: Buffer } = { gzipGzip: Buffer.alloc(0), br: Buffer.alloc(0), stacked: Buffer.alloc(0) };
const hits = new Map<string, number>();
const sockets = new Set<Socket>();
const fetchers: Fetcher[] = [];

function fetcher(o: Partial<FetchOptions> = {}): Fetcher {
  const f = new Fetcher({ ssrfAllowlist: ['127.0.0.1/32'], timeoutMs: 3000, headersTimeoutMs: 1500, bodyTimeoutMs: 1000, retries: 0, maxDecodedBytes: 2_000_000, ...o });
  fetchers.push(f);
  return f;
}

function failure(r: FetchResult) {
  if (r.ok) throw new Error(`expected a failure, got HTTP ${r.httpStatus} with ${r.bytes} bytes`);
  expect(Object.keys(ERROR_CODES)).toContain(r.code);
  return r;
}

function respond(path: string, s: Socket): void {
  const head = (extra: string[], body: Buffer) => {
    s.write([`HTTP/1.1 200 OK`, 'content-type: image/jpeg', `content-length: ${body.length}`, 'connection: close', ...extra, '', ''].join('\r\n'));
    s.end(body);
  };
  const encoded = (encodings: string[], body: Buffer) => head([`content-encoding: ${encodings.join(', ')}`], body);
  switch (path) {
    case '/ok.jpg':
      return head([], jpeg);
    case '/huge-header':
      return head([`x-junk: ${'a'.repeat(200_000)}`], jpeg);
    case '/many-headers':
      return head(Array.from({ length: 20_000 }, (_, i) => `x-h${i}: v`), jpeg);
    case '/endless-headers': {
      // A header block that never ends: one small header line every 20 ms.
      s.write('HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\n');
      const t = setInterval(() => (s.writable ? s.write('x-more: y\r\n') : clearInterval(t)), 20);
      s.on('close', () => clearInterval(t));
      return;
    }
    case '/gzip-gzip-bomb':
      return encoded(['gzip', 'gzip'], bombs.gzipGzip);
    case '/br-bomb':
      return encoded(['br'], bombs.br);
    case '/many-encodings':
      return encoded(Array.from({ length: 300 }, () => 'gzip'), bombs.stacked);
    default:
      s.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  }
}

beforeAll(async () => {
  jpeg = await sharp({ create: { width: 32, height: 24, channels: 3, background: { r: 10, g: 120, b: 200 } } }).jpeg().toBuffer();
  // Each layer is small; only the innermost expands (to 100 MB of zeros, 50× maxDecodedBytes).
  const zeros = Buffer.alloc(100_000_000);
  bombs.gzipGzip = zlib.gzipSync(zlib.gzipSync(zeros, { level: 1 }), { level: 9 });
  bombs.br = zlib.brotliCompressSync(zeros, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } });
  bombs.stacked = jpeg;
  for (let i = 0; i < 300; i++) bombs.stacked = zlib.gzipSync(bombs.stacked, { level: 1 });
  server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const path = buf.split(' ')[1] ?? '/';
      buf = '';
      hits.set(path, (hits.get(path) ?? 0) + 1);
      respond(path, s);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as { port: number }).port;
}, 120_000);

afterAll(async () => {
  await Promise.all(fetchers.map((f) => f.close()));
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('hostile HTTP responses', () => {
  it('a layered gzip bomb, a brotli bomb and 300 stacked encodings stop at maxDecodedBytes or fail as coded errors', async () => {
    const f = fetcher();
    const rss0 = process.memoryUsage().rss;
    for (const p of ['/gzip-gzip-bomb', '/br-bomb']) {
      const r = failure(await f.fetch(`http://127.0.0.1:${port}${p}`));
      expect(r.code, r.detail).toBe('DOWNLOAD_TOO_LARGE');
    }
    const stacked = await f.fetch(`http://127.0.0.1:${port}/many-encodings`);
    if (stacked.ok) expect(Buffer.from(stacked.body).equals(jpeg)).toBe(true);
    else failure(stacked);
    // Nothing near the 100 MB the bombs expand to was held in memory.
    expect(process.memoryUsage().rss - rss0).toBeLessThan(80_000_000);
  });

  it('absurd headers (200 kB in one, 20,000 of them, a header block that never ends) fail with a code, quickly', async () => {
    const f = fetcher();
    const t0 = Date.now();
    const results = await Promise.all(['/huge-header', '/many-headers', '/endless-headers'].map((p) => f.fetch(`http://127.0.0.1:${port}${p}`)));
    for (const r of results) failure(r);
    expect(Date.now() - t0).toBeLessThan(8000);
    // The same fetcher still works afterwards.
    expect((await f.fetch(`http://127.0.0.1:${port}/ok.jpg`)).ok).toBe(true);
  });
});

describe('DNS that changes between lookups (rebinding)', () => {
  it('a name that answers public first and loopback afterwards never reaches the loopback server', async () => {
    const before = hits.get('/ok.jpg') ?? 0;
    let calls = 0;
    // The first answer is a public address (TEST-NET-3, unroutable here); every later one is loopback.
    const rebinding = async () => (calls++ === 0 ? [{ address: '203.0.113.7', family: 4 }] : [{ address: '127.0.0.1', family: 4 }]);
    const f = fetcher({ ssrfAllowlist: [], resolver: rebinding, dnsTtlMs: 0, connectTimeoutMs: 500, retries: 3, retryBaseMs: 10, retryMaxMs: 20 });
    const results = [await f.fetch(`http://rebind.example:${port}/ok.jpg`), await f.fetch(`http://rebind.example:${port}/ok.jpg`)];
    for (const r of results) failure(r);
    expect(results.map((r) => !r.ok && r.code)).toContain('DOWNLOAD_BLOCKED_ADDRESS');
    expect(calls).toBeGreaterThan(1);
    expect(hits.get('/ok.jpg') ?? 0).toBe(before);
  });
});
