import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { Agent, type Dispatcher } from 'undici';
import { realClock, type Clock } from '../core/clock.ts';
import { systemErrorOf, type ErrorCode } from '../core/errors.ts';
import { DnsCache, guardedLookup, systemResolver, type Resolver } from './dns.ts';
import { HostLimiter } from './host-limiter.ts';
import { DEFAULT_DISALLOWED_DIRECTIVES, robotsOptOut } from './robots-tag.ts';
import { BlockedAddressError, SsrfGuard, stripBrackets } from './ssrf.ts';

/**
 * The safe, polite HTTP GET used by the download stage. One `Fetcher` per process: it owns the
 * undici Agent (connection pools, keep-alive), the DNS cache and the per-host limiter.
 *
 * Never throws for a URL's problem: every outcome is a `FetchResult`, failures carry an error
 * code from src/core/errors.ts. Redirects are followed here, hop by hop, so each hop goes through the
 * protocol check, the per-host limiter and the SSRF-guarded connector.
 */
export interface FetchOptions {
  /** Wall-clock limit for one attempt (all redirect hops and the body). */
  timeoutMs: number;
  connectTimeoutMs: number;
  /** Limit for the response headers to arrive, and for the body to stall. */
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  retries: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** A Retry-After longer than this fails the row instead of blocking a worker. */
  maxRetryAfterMs: number;
  maxBodyBytes: number;
  /** Cap for a gzip/deflate/br body after decoding. */
  maxDecodedBytes: number;
  maxRedirects: number;
  perHostConcurrency: number;
  perHostDelayMs: number;
  userAgentToken: string | null;
  userAgentUrl: string | null;
  /** Replaces the whole User-Agent header when set. */
  userAgent: string | null;
  /** X-Robots-Tag directives that opt a resource out; [] turns the check off. */
  disallowedHeaderDirectives: string[];
  /** Agent names matched by "name: directive" X-Robots-Tag values (besides "capfilt" and the token). */
  robotsAgents: string[];
  ssrf: boolean;
  ssrfAllowlist: string[];
  dnsTtlMs: number;
  /** Host resolution (tests and custom DNS); the system resolver by default. */
  resolver: Resolver;
  /** Connections per origin in the undici pool. */
  connectionsPerOrigin: number;
  /**
   * Time for the waits capfilt makes itself — retry backoff and Retry-After, the per-host delay
   * — and for `ms`; the real clock by default (tests pass a manual one). The request timeouts are
   * undici's and the total-attempt timer's, on real time, since they race real sockets.
   */
  clock: Clock;
}

export const PROJECT_URL = 'https://github.com/capfilt/capfilt';

export const CAPFILT_VERSION: string = (() => {
  try {
    return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

export const DEFAULT_FETCH_OPTIONS: FetchOptions = {
  timeoutMs: 20_000,
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 10_000,
  retries: 2,
  retryBaseMs: 500,
  retryMaxMs: 30_000,
  maxRetryAfterMs: 60_000,
  maxBodyBytes: 20 * 1024 * 1024,
  maxDecodedBytes: 40 * 1024 * 1024,
  maxRedirects: 5,
  perHostConcurrency: 16,
  perHostDelayMs: 0,
  userAgentToken: null,
  userAgentUrl: null,
  userAgent: null,
  disallowedHeaderDirectives: DEFAULT_DISALLOWED_DIRECTIVES,
  robotsAgents: [],
  ssrf: true,
  ssrfAllowlist: [],
  dnsTtlMs: 60_000,
  resolver: systemResolver,
  connectionsPerOrigin: 16,
  clock: realClock,
};

export function userAgentString(o: Pick<FetchOptions, 'userAgent' | 'userAgentToken' | 'userAgentUrl'>): string {
  if (o.userAgent) return o.userAgent;
  const parts = [`+${o.userAgentUrl ?? PROJECT_URL}`];
  if (o.userAgentToken) parts.push(o.userAgentToken);
  return `capfilt/${CAPFILT_VERSION} (${parts.join('; ')})`;
}

interface Outcome {
  httpStatus: number | null;
  finalUrl: string | null;
  /** Bytes received (after decoding, for successes). */
  bytes: number;
  attempts: number;
  ms: number;
}
export interface FetchSuccess extends Outcome {
  ok: true;
  body: Uint8Array;
  contentType: string | null;
}
export interface FetchFailure extends Outcome {
  ok: false;
  code: ErrorCode;
  detail: string;
}
export type FetchResult = FetchSuccess | FetchFailure;

interface AttemptFailure {
  ok: false;
  code: ErrorCode;
  detail: string;
  httpStatus: number | null;
  finalUrl: string | null;
  bytes: number;
  retryable: boolean;
  retryAfterMs?: number;
}
type Attempt = Omit<FetchSuccess, 'attempts' | 'ms'> | AttemptFailure;

const ACCEPT = 'image/avif,image/webp,image/apng,image/*;q=0.9,*/*;q=0.5';
const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const inflateRaw = promisify(zlib.inflateRaw);
const brotli = promisify(zlib.brotliDecompress);

export class Fetcher {
  readonly options: FetchOptions;
  readonly userAgent: string;
  private readonly agent: Agent;
  private readonly guard: SsrfGuard;
  private readonly limiter: HostLimiter;
  private readonly robotsAgents: string[];

  constructor(options: Partial<FetchOptions> = {}) {
    const o = { ...DEFAULT_FETCH_OPTIONS, ...stripUndefined(options) };
    this.options = o;
    this.userAgent = userAgentString(o);
    this.guard = new SsrfGuard({ enabled: o.ssrf, allowlist: o.ssrfAllowlist });
    this.limiter = new HostLimiter(o.perHostConcurrency, o.perHostDelayMs, o.clock);
    this.robotsAgents = ['capfilt', ...(o.userAgentToken ? [o.userAgentToken] : []), ...o.robotsAgents];
    const dns = new DnsCache(o.resolver, o.dnsTtlMs);
    this.agent = new Agent({
      connect: { timeout: o.connectTimeoutMs, lookup: guardedLookup(dns, this.guard) as never },
      headersTimeout: o.headersTimeoutMs,
      bodyTimeout: o.bodyTimeoutMs,
      connections: o.connectionsPerOrigin,
      keepAliveTimeout: 10_000,
      // undici counts body bytes as they arrive and aborts past the limit, in C-speed code
      // paths; reading with arrayBuffer() then costs half the CPU of a JS chunk loop.
      maxResponseSize: o.maxBodyBytes,
    });
  }

  async fetch(url: string, signal?: AbortSignal): Promise<FetchResult> {
    const clock = this.options.clock;
    const started = clock.now();
    let attempt = 0;
    for (;;) {
      attempt++;
      const r = await this.attempt(url, signal);
      const ms = Math.max(0, Math.round(clock.now() - started));
      if (r.ok) return { ...r, attempts: attempt, ms };
      const done = !r.retryable || attempt > this.options.retries || signal?.aborted;
      let wait = 0;
      if (!done) {
        wait = r.retryAfterMs ?? this.backoff(attempt);
        if (wait > this.options.maxRetryAfterMs) {
          return { ...failureOf(r), detail: `${r.detail}; Retry-After ${Math.ceil(wait / 1000)} s exceeds maxRetryAfterMs`, attempts: attempt, ms };
        }
      }
      if (done) return { ...failureOf(r), attempts: attempt, ms };
      try {
        await clock.sleep(wait, signal);
      } catch {
        return { ...failureOf(r), code: 'DOWNLOAD_ABORTED', detail: 'cancelled while waiting to retry', attempts: attempt, ms };
      }
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
  private backoff(attempt: number): number {
    const cap = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** (attempt - 1));
    return Math.round(cap / 2 + Math.random() * (cap / 2));
  }

  private async attempt(startUrl: string, outer?: AbortSignal): Promise<Attempt> {
    const o = this.options;
    const ctl = new AbortController();
    const onOuter = () => ctl.abort(outer!.reason);
    if (outer?.aborted) return fail('DOWNLOAD_ABORTED', 'cancelled', null, null, false);
    outer?.addEventListener('abort', onOuter, { once: true });
    // The clock starts once the first hop holds its per-host slot: waiting politely behind other
    // requests to the same host is not the server being slow.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = () => ctl.signal.aborted && !outer?.aborted;
    const visited = new Set<string>();
    let url = startUrl;
    let httpStatus: number | null = null;
    try {
      for (let hop = 0; ; hop++) {
        let u: URL;
        try {
          u = new URL(url);
        } catch {
          return hop === 0
            ? fail('INPUT_URL_INVALID', `not a URL: ${clip(url)}`, null, null, false)
            : fail('DOWNLOAD_REDIRECT_INVALID', `redirect to a malformed URL: ${clip(url)}`, httpStatus, url, false);
        }
        if (u.protocol !== 'http:' && u.protocol !== 'https:') {
          return hop === 0
            ? fail('INPUT_URL_INVALID', `scheme ${u.protocol} is not http(s)`, null, url, false)
            : fail('DOWNLOAD_REDIRECT_INVALID', `redirect to scheme ${u.protocol}`, httpStatus, url, false);
        }
        u.hash = '';
        url = u.href;
        if (visited.has(url)) return fail('DOWNLOAD_REDIRECT_LIMIT', `redirect loop back to ${clip(url)}`, httpStatus, url, false);
        visited.add(url);
        const host = stripBrackets(u.hostname);
        if (isIP(host)) {
          const range = this.guard.check(host, host);
          if (range !== null) return fail('DOWNLOAD_BLOCKED_ADDRESS', `${host} is ${range}, blocked by the SSRF guard`, httpStatus, url, false);
        }
        let release: (() => void) | undefined;
        try {
          release = await this.limiter.acquire(host.toLowerCase(), ctl.signal);
          timer ??= setTimeout(() => ctl.abort(new Error('total timeout')), o.timeoutMs);
          const res = await this.agent.request({
            origin: u.origin,
            path: `${u.pathname}${u.search}`,
            method: 'GET',
            headers: { 'user-agent': this.userAgent, accept: ACCEPT, 'accept-encoding': 'gzip, deflate, br' },
            signal: ctl.signal,
          });
          httpStatus = res.statusCode;
          // Checked on every hop: an opt-out on a redirect covers what it points to.
          const optOut = o.disallowedHeaderDirectives.length
            ? robotsOptOut(res.headers['x-robots-tag'], this.robotsAgents, o.disallowedHeaderDirectives)
            : null;
          if (optOut !== null && res.statusCode >= 200 && res.statusCode < 400) {
            abandon(res.body);
            return fail('DOWNLOAD_OPTED_OUT', `X-Robots-Tag ${optOut}`, httpStatus, url, false);
          }
          if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304) {
            await discard(res.body);
            const location = header(res.headers, 'location');
            if (!location) return fail('DOWNLOAD_REDIRECT_INVALID', `HTTP ${res.statusCode} without Location`, httpStatus, url, false);
            if (hop >= o.maxRedirects) {
              return fail('DOWNLOAD_REDIRECT_LIMIT', `more than ${o.maxRedirects} redirects (last to ${clip(location)})`, httpStatus, url, false);
            }
            try {
              url = new URL(location, url).href;
            } catch {
              return fail('DOWNLOAD_REDIRECT_INVALID', `malformed Location ${clip(location)}`, httpStatus, url, false);
            }
            continue;
          }
          if (res.statusCode < 200 || res.statusCode >= 300) {
            await discard(res.body);
            const retryable = res.statusCode === 429 || res.statusCode === 408 || (res.statusCode >= 500 && res.statusCode !== 501);
            const r = fail('DOWNLOAD_HTTP_STATUS', `HTTP ${res.statusCode}`, httpStatus, url, retryable);
            const after = parseRetryAfter(header(res.headers, 'retry-after'), o.clock.now());
            if (after !== undefined && (res.statusCode === 429 || res.statusCode === 503)) r.retryAfterMs = after;
            return r;
          }
          const declared = Number(header(res.headers, 'content-length'));
          if (Number.isFinite(declared) && declared > o.maxBodyBytes) {
            abandon(res.body);
            return fail('DOWNLOAD_TOO_LARGE', `Content-Length ${declared} > maxBodyBytes ${o.maxBodyBytes}`, httpStatus, url, false);
          }
          const raw = Buffer.from(await res.body.arrayBuffer());
          const encoding = (header(res.headers, 'content-encoding') ?? '').toLowerCase().trim();
          const decoded = await decodeBody(raw, encoding, o.maxDecodedBytes);
          if ('code' in decoded) return fail(decoded.code, decoded.detail, httpStatus, url, false);
          return { ok: true, body: decoded.body, contentType: header(res.headers, 'content-type') ?? null, httpStatus, finalUrl: url, bytes: decoded.body.length };
        } catch (e) {
          if (timedOut()) return fail('DOWNLOAD_TIMEOUT', `no complete response within timeoutMs ${o.timeoutMs}`, httpStatus, url, true);
          if (outer?.aborted) return fail('DOWNLOAD_ABORTED', 'cancelled', httpStatus, url, false);
          return classify(e, httpStatus, url, o.maxBodyBytes);
        } finally {
          release?.();
        }
      }
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    }
  }
}

function fail(code: ErrorCode, detail: string, httpStatus: number | null, finalUrl: string | null, retryable: boolean): AttemptFailure {
  return { ok: false, code, detail, httpStatus, finalUrl, bytes: 0, retryable };
}

function failureOf(r: AttemptFailure): Omit<FetchFailure, 'attempts' | 'ms'> {
  return { ok: false, code: r.code, detail: r.detail, httpStatus: r.httpStatus, finalUrl: r.finalUrl, bytes: r.bytes };
}

/**
 * Maps an error thrown by undici / the connector to a coded, possibly retryable failure, by the
 * error codes it carries (SYSTEM_ERROR_KINDS in src/core/errors.ts), never by its message.
 */
function classify(e: unknown, httpStatus: number | null, url: string, maxBodyBytes: number): AttemptFailure {
  for (let cur: unknown = e, depth = 0; cur && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    if (cur instanceof BlockedAddressError) return fail('DOWNLOAD_BLOCKED_ADDRESS', cur.message, httpStatus, url, false);
  }
  const sys = systemErrorOf(e);
  switch (sys?.kind) {
    case 'too-large':
      return fail('DOWNLOAD_TOO_LARGE', `body exceeds maxBodyBytes ${maxBodyBytes}`, httpStatus, url, false);
    case 'timeout':
      return fail('DOWNLOAD_TIMEOUT', TIMEOUT_TEXT[sys.code] ?? `timeout (${sys.code})`, httpStatus, url, true);
    case 'dns':
      return fail('DOWNLOAD_DNS_FAILED', `${new URL(url).hostname} does not resolve (${sys.code})`, httpStatus, url, false);
    case 'dns-temporary':
      return fail('DOWNLOAD_DNS_FAILED', `${new URL(url).hostname}: temporary DNS failure`, httpStatus, url, true);
    case 'connection':
      return fail('DOWNLOAD_NETWORK', `${sys.code}: ${errMessage(sys.error)}`, httpStatus, url, true);
    default:
      return fail('DOWNLOAD_NETWORK', errMessage(e), httpStatus, url, false);
  }
}

const TIMEOUT_TEXT: Record<string, string> = {
  UND_ERR_CONNECT_TIMEOUT: 'connect timeout',
  UND_ERR_HEADERS_TIMEOUT: 'headers timeout',
  UND_ERR_BODY_TIMEOUT: 'body stalled (bodyTimeout)',
};

function errMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: string })?.code;
  return clip(code && !m.includes(code) ? `${code}: ${m}` : m, 300);
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Seconds or an HTTP date → milliseconds; undefined when absent or unparseable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

async function discard(body: Dispatcher.ResponseData['body']): Promise<void> {
  try {
    await body.dump({ limit: 64 * 1024 });
  } catch {
    abandon(body);
  }
}

/** Destroying an unfinished undici body emits an AbortError; nobody else listens, so absorb it. */
function abandon(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {});
  body.destroy();
}

async function decodeBody(raw: Buffer, encoding: string, max: number): Promise<{ body: Uint8Array } | { code: ErrorCode; detail: string }> {
  const steps = encoding.split(',').map((s) => s.trim()).filter((s) => s && s !== 'identity').reverse();
  let data: Buffer = raw;
  for (const step of steps) {
    try {
      if (step === 'gzip' || step === 'x-gzip') data = await gunzip(data, { maxOutputLength: max });
      else if (step === 'br') data = await brotli(data, { maxOutputLength: max });
      else if (step === 'deflate') {
        // Servers send both the zlib-wrapped form RFC 9110 specifies and raw deflate.
        try {
          data = await inflate(data, { maxOutputLength: max });
        } catch (e) {
          if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw e;
          data = await inflateRaw(data, { maxOutputLength: max });
        }
      } else return { code: 'DOWNLOAD_ENCODING_INVALID', detail: `unsupported Content-Encoding ${clip(step)}` };
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        return { code: 'DOWNLOAD_TOO_LARGE', detail: `${step}-decoded body exceeds maxDecodedBytes ${max}` };
      }
      return { code: 'DOWNLOAD_ENCODING_INVALID', detail: `corrupt ${step} body: ${errMessage(e)}` };
    }
  }
  return { body: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

function clip(s: string, n = 200): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
