import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../src/dashboard/server.ts';
import { isCapfiltError } from '../../src/core/errors.ts';
import { REDIS_URL } from '../helpers/redis-cleanup.ts';

/**
 * Dashboard exposure beyond test/e2e/dashboard-auth (which checks 0.0.0.0 without a token, the
 * token on every route and the login cookie): every spelling of a public bind without a token,
 * empty tokens, and the login form's `next` parameter as an open redirect.
 */
const prefix = `test-dsec-${randomUUID().slice(0, 8)}`;
const TOKEN = `t-${randomUUID()}`;
let redis: Redis;
let dashboard: Dashboard;

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  dashboard = await startDashboard({ redis, prefix, host: '127.0.0.1', port: 0, token: TOKEN, pollMs: 1000 });
});
afterAll(async () => {
  await dashboard?.close();
  await redis.quit();
});

describe('dashboard exposure', () => {
  it.each(['0.0.0.0', '::', '0', '[::]', '::ffff:0.0.0.0', '10.1.2.3', '127.0.0.1.nip.io', 'localhost.evil.example'])('refuses to bind %s without a token', async (host) => {
    for (const token of [undefined, '', null]) {
      const err = await startDashboard({ redis, prefix, host, port: 0, token: token as string | undefined }).catch((e: unknown) => e);
      if (!isCapfiltError(err, 'DASHBOARD_TOKEN_REQUIRED')) {
        if (err && typeof (err as { close?: unknown }).close === 'function') await (err as Dashboard).close();
        throw new Error(`bound ${host} with token ${JSON.stringify(token)}: ${String(err)}`);
      }
    }
  });

  it.each(['/\\evil.example', '/\\/evil.example', '//evil.example', '/%5Cevil.example', 'https://evil.example', '/\t/evil.example'])(
    'login never redirects off-site (next=%s)',
    async (next) => {
      const res = await fetch(new URL('/login', dashboard.url), {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: TOKEN, next }).toString(),
      });
      expect(res.status).toBe(303);
      const location = res.headers.get('location') ?? '';
      // Browsers treat "\" like "/" and drop tabs, so "/\evil" or "/\t/evil" would be "//evil": another host.
      const resolved = new URL(location.replace(/\\/g, '/').replace(/[\t\n\r]/g, ''), dashboard.url);
      expect(resolved.origin, location).toBe(new URL(dashboard.url).origin);
      const page = await fetch(new URL(`/login?next=${encodeURIComponent(next)}`, dashboard.url)).then((r) => r.text());
      const hidden = /name="next" value="([^"]*)"/.exec(page)?.[1] ?? '';
      expect(new URL(hidden.replace(/\\/g, '/').replace(/[\t\n\r]/g, ''), dashboard.url).origin, hidden).toBe(new URL(dashboard.url).origin);
    },
  );
});
