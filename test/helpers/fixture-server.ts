import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import sharp from 'sharp';

/**
 * A real HTTP server on 127.0.0.1 with the behaviours scraped image URLs show: opt-out headers,
 * slow and never-ending bodies, redirect chains and loops, 429/5xx with Retry-After, wrong
 * content types, oversized and compressed bodies. Counters let tests see retries and politeness.
 */
export interface FixtureServer {
  url: string;
  port: number;
  jpeg: Buffer;
  hits: Map<string, number>;
  /** Request start times (ms) per path, and the highest number of requests seen at once. */
  starts: Map<string, number[]>;
  /** The highest number of requests to `path` seen in flight at once. */
  maxConcurrent: (path: string) => number;
  close: () => Promise<void>;
}

/** Extra static routes: path → body and Content-Type (e.g. image fixtures). */
export type StaticRoutes = Map<string, { body: Buffer; type: string; headers?: Record<string, string> }>;

export async function startFixtureServer(routes: StaticRoutes = new Map()): Promise<FixtureServer> {
  const jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 30, b: 30 } } }).jpeg().toBuffer();
  const gzipBomb = zlib.gzipSync(Buffer.alloc(20_000_000), { level: 1 });
  const hits = new Map<string, number>();
  const starts = new Map<string, number[]>();
  const active = new Map<string, number>();
  const maxActive = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const every = (ms: number, fn: () => void) => {
    const t = setInterval(fn, ms);
    timers.add(t);
    return t;
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const path = u.pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    starts.set(path, [...(starts.get(path) ?? []), Date.now()]);
    const now = (active.get(path) ?? 0) + 1;
    active.set(path, now);
    maxActive.set(path, Math.max(maxActive.get(path) ?? 0, now));
    res.on('close', () => active.set(path, active.get(path)! - 1));
    const image = (extra: Record<string, string> = {}) => {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(jpeg.length), ...extra });
      res.end(jpeg);
    };
    const q = (k: string) => u.searchParams.get(k);

    const route = routes.get(path);
    if (route) {
      res.writeHead(200, { 'content-type': route.type, 'content-length': String(route.body.length), ...route.headers });
      return res.end(route.body);
    }
    if (path === '/ok.jpg') return image();
    if (path === '/hold.jpg' || path === '/hold2.jpg' || path === '/hold3.jpg') return void setTimeout(() => image(), Number(q('ms') ?? 100));
    if (path === '/ua') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end(req.headers['user-agent'] ?? '');
    }
    if (path === '/robots') return image({ 'x-robots-tag': q('v') ?? 'noai' });
    if (path === '/slow-headers') return void setTimeout(() => image(), Number(q('ms') ?? 3000));
    if (path === '/stall') {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      res.write(jpeg.subarray(0, 10));
      return;
    }
    if (path === '/drip') {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      const t = every(20, () => res.write(Buffer.alloc(16, 1)));
      res.on('close', () => clearInterval(t));
      return;
    }
    if (path === '/endless') {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (res.write(chunk));
      };
      res.on('drain', pump);
      pump();
      return;
    }
    const chain = path.match(/^\/redirect\/(\d+)$/);
    if (chain) {
      const n = Number(chain[1]);
      res.writeHead(302, { location: n <= 1 ? '/ok.jpg' : `/redirect/${n - 1}` });
      return res.end();
    }
    if (path === '/loop/a' || path === '/loop/b') {
      res.writeHead(301, { location: path === '/loop/a' ? '/loop/b' : '/loop/a' });
      return res.end();
    }
    if (path === '/redirect-to') {
      res.writeHead(302, { location: q('to') ?? '', ...(q('robots') ? { 'x-robots-tag': q('robots')! } : {}) });
      return res.end();
    }
    if (path === '/redirect-no-location') {
      res.writeHead(302);
      return res.end();
    }
    const status = path.match(/^\/status\/(\d+)$/);
    if (status) {
      const headers: Record<string, string> = {};
      if (q('retry-after')) headers['retry-after'] = q('retry-after')!;
      res.writeHead(Number(status[1]), headers);
      return res.end('error page');
    }
    if (path.startsWith('/flaky/')) {
      // Fails `fail` times with `status` (and Retry-After), then serves the image.
      if ((hits.get(path) ?? 0) <= Number(q('fail') ?? 1)) {
        const headers: Record<string, string> = {};
        if (q('retry-after')) headers['retry-after'] = q('retry-after')!;
        res.writeHead(Number(q('status') ?? 503), headers);
        return res.end('try later');
      }
      return image();
    }
    if (path.startsWith('/reset-once/')) {
      if ((hits.get(path) ?? 0) === 1) return req.socket.destroy();
      return image();
    }
    if (path === '/reset') return req.socket.destroy();
    if (path === '/html-as-jpeg') {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      return res.end('<!doctype html><html><body>Not found</body></html>');
    }
    if (path === '/big') {
      const n = Number(q('bytes') ?? 5_000_000);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(n) });
      return res.end(Buffer.alloc(n, 1));
    }
    if (path === '/big-chunked') {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      for (let i = 0; i < 80; i++) res.write(Buffer.alloc(64 * 1024, 1));
      return res.end();
    }
    if (path === '/gzip') {
      const body = zlib.gzipSync(jpeg);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'gzip', 'content-length': String(body.length) });
      return res.end(body);
    }
    if (path === '/deflate-raw') {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'deflate' });
      return res.end(zlib.deflateRawSync(jpeg));
    }
    if (path === '/gzip-bomb') {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'gzip' });
      return res.end(gzipBomb);
    }
    if (path === '/gzip-corrupt') {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'gzip' });
      return res.end(Buffer.from('this is not gzip'));
    }
    if (path === '/compress') {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'compress' });
      return res.end(jpeg);
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    jpeg,
    hits,
    starts,
    maxConcurrent: (path) => maxActive.get(path) ?? 0,
    close: async () => {
      for (const t of timers) clearInterval(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
