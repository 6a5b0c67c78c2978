import { BlockList, isIP } from 'node:net';

/**
 * SSRF guard: a scraped dataset is untrusted input, and each of its URLs makes this process open
 * a connection. Without a guard one row pointing at 169.254.169.254 (cloud metadata), 127.0.0.1 or
 * a 10.x intranet host reads internal services from inside the worker's network. The guard is on
 * by default and judges the *resolved address* of every connection (the fetcher's undici connector
 * calls `guardedLookup`), so a DNS answer that changes between a check and the connect (DNS
 * rebinding) cannot bypass it; IP-literal hosts skip DNS and are checked directly.
 *
 * An allowlist entry is a CIDR ("10.0.0.0/8"), a literal address, a host name ("images.intra"),
 * a suffix wildcard ("*.intra") or "*" (guard off). Tests and intranets use it.
 */

const V4_BLOCKED: Array<[string, number, string]> = [
  ['0.0.0.0', 8, 'unspecified'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'carrier-grade NAT'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, '6to4 relay anycast'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];

const V6_BLOCKED: Array<[string, number, string]> = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['100::', 64, 'discard-only'],
  ['2001::', 23, 'IETF protocol assignments'],
  ['2001:db8::', 32, 'documentation'],
  ['fc00::', 7, 'unique-local'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local'],
  ['ff00::', 8, 'multicast'],
];

function buildList(entries: Array<[string, number, string]>, family: 'ipv4' | 'ipv6'): Array<[BlockList, string]> {
  return entries.map(([net, prefix, label]) => {
    const list = new BlockList();
    list.addSubnet(net, prefix, family);
    return [list, label];
  });
}

const V4_LISTS = buildList(V4_BLOCKED, 'ipv4');
const V6_LISTS = buildList(V6_BLOCKED, 'ipv6');

/** Expands an IPv6 text form into its 8 16-bit groups (handles "::" and a dotted IPv4 tail). */
function ipv6Groups(ip: string): number[] | null {
  let text = ip.toLowerCase();
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  const tail = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (tail) {
    const o = tail[1].split('.').map(Number);
    text = text.slice(0, -tail[1].length) + `${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? head.length !== 8 : missing < 0) return null;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill('0'), ...rest].map((g) => parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

function v4FromGroups(hi: number, lo: number): string {
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/**
 * The IPv4 address an IPv6 address carries, when it is a form that reaches an IPv4 host:
 * IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96), 6to4 (2002::/16).
 */
export function embeddedIpv4(ip: string): string | null {
  const g = ipv6Groups(ip);
  if (!g) return null;
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && g[5] === 0xffff) return v4FromGroups(g[6], g[7]);
  if (zeros(0, 6) && (g[6] !== 0 || g[7] > 1)) return v4FromGroups(g[6], g[7]);
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return v4FromGroups(g[6], g[7]);
  if (g[0] === 0x2002) return v4FromGroups(g[1], g[2]);
  return null;
}

/** Why an address must not be contacted ("loopback", "private", ...), or null when it is public. */
export function blockedRange(ip: string): string | null {
  const family = isIP(ip);
  if (family === 4) {
    if (ip === '255.255.255.255') return 'broadcast';
    for (const [list, label] of V4_LISTS) if (list.check(ip, 'ipv4')) return label;
    return null;
  }
  if (family === 6) {
    const v4 = embeddedIpv4(ip);
    if (v4 !== null) {
      const inner = blockedRange(v4);
      return inner === null ? null : `${inner} (embedded in IPv6)`;
    }
    const bare = ip.split('%')[0];
    for (const [list, label] of V6_LISTS) if (list.check(bare, 'ipv6')) return label;
    return null;
  }
  return 'not an IP address';
}

export interface SsrfOptions {
  /** Default true. */
  enabled?: boolean;
  allowlist?: string[];
}

export class SsrfGuard {
  readonly enabled: boolean;
  private readonly hosts = new Set<string>();
  private readonly suffixes: string[] = [];
  private readonly v4 = new BlockList();
  private readonly v6 = new BlockList();
  private allowAll = false;

  constructor(options: SsrfOptions = {}) {
    this.enabled = options.enabled ?? true;
    for (const raw of options.allowlist ?? []) this.allow(raw.trim());
  }

  private allow(entry: string): void {
    if (entry === '*') {
      this.allowAll = true;
      return;
    }
    const slash = entry.indexOf('/');
    const addr = slash >= 0 ? entry.slice(0, slash) : stripBrackets(entry);
    const family = isIP(addr);
    if (family !== 0) {
      const prefix = slash >= 0 ? Number(entry.slice(slash + 1)) : family === 4 ? 32 : 128;
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
        throw new RangeError(`ssrfAllowlist entry "${entry}": prefix length must be 0..${family === 4 ? 32 : 128}`);
      }
      (family === 4 ? this.v4 : this.v6).addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
      return;
    }
    if (slash >= 0) throw new RangeError(`ssrfAllowlist entry "${entry}": not a CIDR (address/prefix)`);
    if (entry.startsWith('*.')) this.suffixes.push(entry.slice(1).toLowerCase());
    else this.hosts.add(entry.toLowerCase());
  }

  /** True when connections to this host name are not checked at all. */
  hostAllowed(host: string): boolean {
    if (!this.enabled || this.allowAll) return true;
    const h = stripBrackets(host).toLowerCase();
    return this.hosts.has(h) || this.suffixes.some((s) => h.endsWith(s));
  }

  /** Null when `ip` (resolved for `host`) may be contacted, else the blocked range's name. */
  check(ip: string, host: string): string | null {
    if (this.hostAllowed(host)) return null;
    const family = isIP(ip);
    if (family === 4 && this.v4.check(ip, 'ipv4')) return null;
    if (family === 6) {
      if (this.v6.check(ip.split('%')[0], 'ipv6')) return null;
      const v4 = embeddedIpv4(ip);
      if (v4 !== null && this.v4.check(v4, 'ipv4')) return null;
    }
    return blockedRange(ip);
  }
}

export function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** Error a guarded lookup fails the connection with; the fetcher maps it to DOWNLOAD_BLOCKED_ADDRESS. */
export class BlockedAddressError extends Error {
  readonly code = 'ECAPFILT_BLOCKED';
  constructor(readonly host: string, readonly address: string, readonly range: string) {
    super(`${host} resolves to ${address} (${range}), blocked by the SSRF guard`);
    this.name = 'BlockedAddressError';
  }
}
