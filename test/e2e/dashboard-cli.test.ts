import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { getPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../../bin/capfilt.js', import.meta.url));
const children: ChildProcess[] = [];

function capfilt(args: string[]): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAPFILT_DASHBOARD_TOKEN: '' } });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, exited };
}

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('capfilt dashboard (CLI)', () => {
  it('prints its URL, serves the page and stops cleanly on SIGTERM with a page still connected', async () => {
    const p = capfilt(['dashboard', '--port', '0', '--prefix', `test-dcli-${randomUUID().slice(0, 8)}`]);
    const deadline = Date.now() + 30_000;
    while (!/http:\/\/127\.0\.0\.1:\d+\//.test(p.out()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const url = p.out().match(/http:\/\/127\.0\.0\.1:\d+\//)?.[0];
    expect(url, p.out()).toBeTruthy();
    // Niced by default, so that a hammered dashboard yields the CPU to workers on the same host.
    expect(getPriority(p.child.pid!)).toBeGreaterThanOrEqual(10);
    const page = await fetch(url!);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>capfilt · dashboard</title>');
    const chart = await fetch(`${url}assets/uPlot.iife.min.js`);
    expect(chart.status).toBe(200);
    expect((await chart.text()).length).toBeGreaterThan(10_000);
    // An open live stream (a page left open) must not keep the server from stopping.
    const events = await fetch(`${url}events`, { headers: { accept: 'text/event-stream' } });
    const first = await events.body!.getReader().read();
    expect(new TextDecoder().decode(first.value)).toContain('event: overview');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('refuses to bind 0.0.0.0 without a token, with a clear message and a non-zero exit', async () => {
    const p = capfilt(['dashboard', '--host', '0.0.0.0', '--port', '0']);
    expect(await p.exited).toBe(1);
    expect(p.out()).toContain('DASHBOARD_TOKEN_REQUIRED');
    expect(p.out()).toContain('--token');
  });

  it('refuses a --nice outside 0–19 with a coded usage error', async () => {
    const p = capfilt(['dashboard', '--port', '0', '--nice', '-5']);
    expect(await p.exited).not.toBe(0);
    expect(p.out()).toContain('CLI_USAGE');
    expect(p.out()).toContain('--nice');
  });

  it.each([['--max-rps', '-1'], ['--client-rps', 'fast']])('refuses %s %s with a coded usage error', async (flag, value) => {
    const p = capfilt(['dashboard', '--port', '0', flag, value]);
    expect(await p.exited).not.toBe(0);
    expect(p.out()).toContain('CLI_USAGE');
    expect(p.out()).toContain(flag);
  });
});
