import { promises as dnsPromises, type LookupAddress } from 'node:dns';
import { BlockedAddressError, type SsrfGuard } from './ssrf.ts';

/**
 * DNS for the fetcher: a small TTL cache in front of the system resolver (a scrape hits the same
 * few thousand hosts millions of times, and getaddrinfo runs on the libuv threadpool that sharp
 * also needs), and the connect-time lookup that applies the SSRF guard to the addresses the
 * socket will actually use.
 */
export type Resolver = (host: string) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (host) => dnsPromises.lookup(host, { all: true, verbatim: true });

interface Entry {
  expires: number;
  addresses?: LookupAddress[];
  error?: NodeJS.ErrnoException;
  pending?: Promise<LookupAddress[]>;
}

export class DnsCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly resolver: Resolver = systemResolver,
    private readonly ttlMs = 60_000,
    private readonly negativeTtlMs = 5_000,
    private readonly maxEntries = 50_000,
  ) {}

  async resolve(host: string): Promise<LookupAddress[]> {
    const now = Date.now();
    const hit = this.entries.get(host);
    if (hit && (hit.pending || hit.expires > now)) {
      if (hit.pending) return hit.pending;
      if (hit.error) throw hit.error;
      return hit.addresses!;
    }
    if (this.entries.size >= this.maxEntries) this.prune(now);
    const pending = this.resolver(host).then(
      (addresses) => {
        this.entries.set(host, { expires: Date.now() + this.ttlMs, addresses });
        return addresses;
      },
      (error: NodeJS.ErrnoException) => {
        this.entries.set(host, { expires: Date.now() + this.negativeTtlMs, error });
        throw error;
      },
    );
    this.entries.set(host, { expires: Infinity, pending });
    return pending;
  }

  private prune(now: number): void {
    for (const [k, v] of this.entries) if (!v.pending && v.expires <= now) this.entries.delete(k);
    if (this.entries.size >= this.maxEntries) this.entries.clear();
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `net.connect` lookup function: resolves through the cache, drops no address silently — if
 * any resolved address is blocked the connection fails, since an attacker controls which of
 * several A records the socket would pick.
 */
export function guardedLookup(cache: DnsCache, guard: SsrfGuard) {
  return (hostname: string, options: { all?: boolean; family?: number | string }, callback: LookupCallback): void => {
    cache.resolve(hostname).then(
      (all) => {
        const wanted = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0;
        const addresses = wanted ? all.filter((a) => a.family === wanted) : all;
        if (addresses.length === 0) {
          const e: NodeJS.ErrnoException = new Error(`${hostname}: no address of the requested family`);
          e.code = 'ENOTFOUND';
          callback(e, '', 0);
          return;
        }
        for (const a of addresses) {
          const range = guard.check(a.address, hostname);
          if (range !== null) {
            callback(new BlockedAddressError(hostname, a.address, range), '', 0);
            return;
          }
        }
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0].address, addresses[0].family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
}
