import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fetcher, type FetchOptions } from '../../../src/io/fetch.ts';
import { SsrfGuard, blockedRange, embeddedIpv4 } from '../../../src/io/ssrf.ts';
import { startFixtureServer, type FixtureServer } from '../../helpers/fixture-server.ts';

let srv: FixtureServer;
const fetchers: Fetcher[] = [];
function fetcher(o: Partial<FetchOptions> = {}): Fetcher {
  const f = new Fetcher({ timeoutMs: 2000, retries: 0, ...o });
  fetchers.push(f);
  return f;
}
/** A resolver that maps every name to the given address, like a hostile DNS answer would. */
const resolveTo = (address: string, family = 4) => async () => [{ address, family }];

beforeAll(async () => {
  srv = await startFixtureServer();
});
afterAll(async () => {
  await Promise.all(fetchers.map((f) => f.close()));
  await srv.close();
});

describe('blockedRange', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.20.1.1', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fd00::1', 'unique-local'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback (embedded in IPv6)'],
    ['::ffff:7f00:1', 'loopback (embedded in IPv6)'],
    ['::ffff:169.254.169.254', 'link-local (embedded in IPv6)'],
    ['64:ff9b::a00:1', 'private (embedded in IPv6)'],
    ['2002:7f00:1::', 'loopback (embedded in IPv6)'],
  ])('blocks %s (%s)', (ip, label) => {
    expect(blockedRange(ip)).toBe(label);
  });

  it.each(['93.184.216.34', '8.8.8.8', '2606:4700::6810:84e5', '::ffff:8.8.8.8'])('lets public %s through', (ip) => {
    expect(blockedRange(ip)).toBeNull();
  });

  it('extracts the IPv4 address inside IPv6 forms', () => {
    expect(embeddedIpv4('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(embeddedIpv4('2606:4700::1')).toBeNull();
  });
});

describe('SsrfGuard allowlist', () => {
  it('allows CIDRs, literal addresses, host names and suffix wildcards', () => {
    const g = new SsrfGuard({ allowlist: ['10.0.0.0/8', '::1', 'images.intra', '*.corp.example'] });
    expect(g.check('10.9.9.9', 'x')).toBeNull();
    expect(g.check('::ffff:10.9.9.9', 'x')).toBeNull();
    expect(g.check('::1', 'x')).toBeNull();
    expect(g.check('127.0.0.1', 'images.intra')).toBeNull();
    expect(g.check('127.0.0.1', 'a.b.corp.example')).toBeNull();
    expect(g.check('127.0.0.1', 'corp.example.evil')).toBe('loopback');
    expect(g.check('192.168.0.1', 'x')).toBe('private');
    expect(new SsrfGuard({ enabled: false }).check('127.0.0.1', 'x')).toBeNull();
    expect(() => new SsrfGuard({ allowlist: ['10.0.0.0/40'] })).toThrow(/prefix length/);
  });
});

describe('Fetcher with the SSRF guard on (default)', () => {
  it.each([
    ['loopback literal', () => `${srv.url}/ok.jpg`],
    ['IPv6 loopback', () => `http://[::1]:${srv.port}/ok.jpg`],
    ['IPv4-mapped loopback', () => `http://[::ffff:127.0.0.1]:${srv.port}/ok.jpg`],
    ['cloud metadata', () => 'http://169.254.169.254/latest/meta-data/'],
    ['private network', () => 'http://10.0.0.1/a.jpg'],
    ['decimal-encoded loopback', () => `http://2130706433:${srv.port}/ok.jpg`],
  ])('refuses %s without connecting', async (_name, url) => {
    const before = srv.hits.get('/ok.jpg') ?? 0;
    const r = await fetcher().fetch(url());
    expect(r.ok).toBe(false);
    expect(!r.ok && r.code).toBe('DOWNLOAD_BLOCKED_ADDRESS');
    expect(srv.hits.get('/ok.jpg') ?? 0).toBe(before);
  });

  it('refuses a host name that resolves to loopback (system DNS: localhost)', async () => {
    const r = await fetcher().fetch(`http://localhost:${srv.port}/ok.jpg`);
    expect(!r.ok && r.code).toBe('DOWNLOAD_BLOCKED_ADDRESS');
  });

  it('refuses a public-looking name whose DNS answer is loopback or mapped loopback', async () => {
    for (const [addr, fam] of [['127.0.0.1', 4], ['::ffff:127.0.0.1', 6]] as const) {
      const r = await fetcher({ resolver: resolveTo(addr, fam) }).fetch(`http://images.example.com:${srv.port}/ok.jpg`);
      expect(!r.ok && r.code).toBe('DOWNLOAD_BLOCKED_ADDRESS');
      expect(!r.ok && r.detail).toContain(addr);
    }
  });

  it('refuses a name with one public and one loopback record (the socket could pick either)', async () => {
    let calls = 0;
    const mixed = async () => {
      calls++;
      return [{ address: '93.184.216.34', family: 4 }, { address: '127.0.0.1', family: 4 }];
    };
    const r = await fetcher({ resolver: mixed }).fetch(`http://mixed.example.com:${srv.port}/ok.jpg`);
    expect(!r.ok && r.code).toBe('DOWNLOAD_BLOCKED_ADDRESS');
    // The guard judges the answer the connection itself uses: one resolution, no separate pre-check.
    expect(calls).toBe(1);
  });

  it('blocks a redirect hop to loopback from an allowed host', async () => {
    // "cdn.example" is allowlisted by name and resolves to the fixture server; its redirect
    // to 127.0.0.1 must still be refused.
    const f = fetcher({ resolver: resolveTo('127.0.0.1'), ssrfAllowlist: ['cdn.example'] });
    const direct = await f.fetch(`http://cdn.example:${srv.port}/ok.jpg`);
    expect(direct.ok).toBe(true);
    const to = encodeURIComponent(`http://127.0.0.1:${srv.port}/ok.jpg`);
    const r = await f.fetch(`http://cdn.example:${srv.port}/redirect-to?to=${to}`);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.code).toBe('DOWNLOAD_BLOCKED_ADDRESS');
    expect(r.httpStatus).toBe(302);
  });

  it('allows the fixture server once its CIDR is allowlisted', async () => {
    const r = await fetcher({ ssrfAllowlist: ['127.0.0.0/8'] }).fetch(`${srv.url}/ok.jpg`);
    expect(r.ok).toBe(true);
  });
});
