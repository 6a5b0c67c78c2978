import { Agent, request } from 'undici';

/**
 * A bounded HTTP load generator: `clients` loops, each sending one request at a time over the
 * given paths until stopped, waiting `thinkMs` between requests (0: a closed loop that never
 * backs off; a few hundred ms: open dashboards and scrapers polling). Counts requests, errors and latency percentiles.
 * `inspect`, when given, sees every answer's status, headers and body (read as text, not discarded).
 */
export interface LoadStats {
  requests: number;
  errors: number;
  statuses: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  seconds: number;
}

export type Inspect = (status: number, headers: Record<string, string | string[] | undefined>, body: string) => void;

export function startLoad(base: string, paths: string[], clients: number, thinkMs = 0, inspect?: Inspect): { stop(): Promise<LoadStats> } {
  const agent = new Agent({ connections: clients, keepAliveTimeout: 10_000 });
  let running = true;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  const t0 = performance.now();
  const loop = async (i: number) => {
    for (let n = i; running; n++) {
      const path = paths[n % paths.length];
      const s = performance.now();
      try {
        const res = await request(new URL(path, base), { dispatcher: agent, headersTimeout: 10_000, bodyTimeout: 10_000 });
        if (inspect) inspect(res.statusCode, res.headers, await res.body.text());
        else await res.body.dump({ limit: 10_000_000 });
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        if (res.statusCode >= 400) errors++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - s);
      if (thinkMs > 0) await new Promise((r) => setTimeout(r, thinkMs));
    }
  };
  const loops = Array.from({ length: clients }, (_, i) => loop(i));
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      await agent.close();
      latencies.sort((a, b) => a - b);
      const q = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : 0);
      return { requests: latencies.length, errors, statuses, p50Ms: Math.round(q(0.5)), p99Ms: Math.round(q(0.99)), seconds: (performance.now() - t0) / 1000 };
    },
  };
}
