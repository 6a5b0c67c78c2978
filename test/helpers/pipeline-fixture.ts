import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { LoadedConfig } from '../../src/config/load.ts';
import { testConfig } from './config.ts';

/**
 * A real HTTP server on 127.0.0.1 serving small JPEGs (`/img/<n>.jpg`), plus failing routes
 * (`/missing/<n>` 404, `/html/<n>` an HTML page served as image/jpeg, `/slow/<n>.jpg` delayed),
 * and a CSV input whose rows mix them, so a run has kept and failed rows to account for.
 */
export interface PipelineFixture {
  dir: string;
  baseUrl: string;
  input: string;
  /** Row index → expected to fail in download. */
  failing: Set<number>;
  rows: number;
  close(): Promise<void>;
}

export async function startFixture(rows: number, opts: { slowMs?: number; failEvery?: number } = {}): Promise<PipelineFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-pipe-'));
  const jpegs = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      sharp({ create: { width: 64 + 8 * i, height: 48 + 4 * i, channels: 3, background: { r: 30 * i, g: 200 - 20 * i, b: 90 } } }).jpeg().toBuffer(),
    ),
  );
  const server: Server = createServer((req, res) => {
    const url = req.url ?? '';
    const m = /^\/(img|missing|html|slow)\/(\d+)/.exec(url);
    if (!m) return void res.writeHead(404).end();
    const n = Number(m[2]);
    if (m[1] === 'missing') return void res.writeHead(404, { 'content-type': 'text/plain' }).end('no');
    if (m[1] === 'html') return void res.writeHead(200, { 'content-type': 'image/jpeg' }).end('<html><body>not an image</body></html>');
    const send = () => res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpegs[n % jpegs.length]);
    if (m[1] === 'slow') setTimeout(send, opts.slowMs ?? 200);
    else send();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const failing = new Set<number>();
  const lines = ['url,caption,extra_id'];
  const failEvery = opts.failEvery ?? 7;
  for (let i = 0; i < rows; i++) {
    let url = `${baseUrl}/${opts.slowMs ? 'slow' : 'img'}/${i}.jpg`;
    if (i % failEvery === 3) {
      url = i % 2 ? `${baseUrl}/missing/${i}` : `${baseUrl}/html/${i}`;
      failing.add(i);
    }
    lines.push(`${url},"a picture number ${i}, with a comma",id${i}`);
  }
  const input = join(dir, 'input.csv');
  writeFileSync(input, `${lines.join('\n')}\n`);
  return {
    dir, baseUrl, input, failing, rows,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The config of a run over the fixture: its input into `out`, shards of 40 rows, download and
 * write from the loopback server without retries. `options` (config paths → values) add to that
 * or replace a default; `env` is the environment the config sees (REDIS_URL, …).
 */
export function fixtureConfig(fx: PipelineFixture, out: string, options: Record<string, unknown>, env: Record<string, string>): LoadedConfig {
  const values: Record<string, unknown> = {
    'input.path': fx.input, 'output.dir': out, 'shards.rows': 40, 'pipeline.stages': 'download,write',
    'download.ssrfAllowlist': '127.0.0.1', 'download.retries': 0, ...options,
  };
  return testConfig(values, env);
}
