/**
 * End-to-end CapFilt at BLIP-base size: `npm run bench:capfilt -- [--rows 64] [--new-tokens 20]
 *     [--threads N[,N…]] [--spinning auto|on|off[,…]] [--precision auto|fp32|int8] [--hf] [--quiet-wait S] [--keep]`.
 * Prints one JSON object.
 *
 * The real pipeline (Redis/BullMQ through a private redis-server, in-process workers whose
 * models are loaded before the clock starts): download from a loopback HTTP server (demo scenes,
 * 384 px JPEGs) → caption K = 1 → filter the web text and the synthetic caption (ITM and ITC) →
 * write, with random-weight captioner and filter at the released base sizes (bench/random-blip.ts).
 * Captions have a fixed length: greedy, min length = max length = prefix + --new-tokens, so
 * random weights cost what trained ones would. Reported: rows/s, each stage's share of the
 * stage time (wall time inside the stage functions, summed over shards from _stats.json;
 * stages overlap across shards, so shares are of the summed stage time, not of the run), the
 * process's CPU seconds per row with the kernel's share of them and the minor page faults per
 * row (fresh memory is expensive on the VMs this project measures on: a fault cost ~14 µs there),
 * and the CPU share other processes took meanwhile.
 *
 * Thread placement: `--threads 1,2` runs the pipeline once per models.threads value (ORT
 * intra-op threads of each model's session; the captioner and the filter each run in their own
 * inference thread, so a host serving both runs 2 × N ORT threads beside the event loop and
 * sharp's libvips threads), one after the other on the same rows, each with freshly loaded
 * models; `--spinning on,off` likewise runs once per models.spinning value (whether ORT's
 * intra-op threads spin-wait; auto = off here, since this host serves caption and filter), and
 * every thread count × spinning pair is run. `variants` lists the runs side by side; `ours` is
 * the fastest.
 *
 * --hf runs tools/reference/blip_capfilt_torch.py (HF's BLIP modules in PyTorch, Debian's
 * python3-torch under /usr/bin/python3 or $CAPFILT_TORCH_PYTHON) over the same rows from the
 * same server with the same batch, prefix, caption length and threads, after our run, and prints
 * its rows/s and ours / theirs.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig, type Override } from '../src/config/load.ts';
import { logger } from '../src/core/logger.ts';
import { loadTokenizer } from '../src/models/blip/tokenizer.ts';
import { promptPrefix } from '../src/models/blip/prompt.ts';
import { serveDemoImages, writeDemoInput } from '../src/run/demo.ts';
import { runPipeline } from '../src/run/run.ts';
import { WorkerHost } from '../src/workers/host.ts';
import { startPrivateRedis } from '../src/workers/private-redis.ts';
import { writeRandomBlip } from './random-blip.ts';
import { othersShare, waitQuiet } from './clip.ts';
import { machine, round } from './timing.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '64' },
    'new-tokens': { type: 'string', default: '20' },
    threads: { type: 'string' },
    spinning: { type: 'string' },
    precision: { type: 'string', default: 'auto' },
    hf: { type: 'boolean', default: false },
    'quiet-wait': { type: 'string', default: '0' },
    keep: { type: 'boolean', default: false },
  },
});

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PYTHON = process.env.CAPFILT_TORCH_PYTHON || (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
const rows = Number(values.rows);
const newTokens = Number(values['new-tokens']);
const seed = 20261206;
const log = logger().child({ bench: 'capfilt' });
const set = (path: string, value: unknown): Override => ({ path, value, source: 'bench' });
const work = mkdtempSync(join(tmpdir(), 'capfilt-bench-capfilt-'));

/** Runs the PyTorch reference; asynchronously, since the image server lives in this process. */
function torchReference(model: string, input: string, prefix: number[], batch: number, threads: number): Promise<Record<string, unknown>> {
  const child = spawn(PYTHON, [join(ROOT, 'tools', 'reference', 'blip_capfilt_torch.py'), '--captioner', join(model, 'captioner'), '--filter', join(model, 'filter'),
    '--rows', input, '--prefix-ids', prefix.join(','), '--new-tokens', String(newTokens), '--batch', String(batch), '--threads', String(threads)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    child.on('error', (e) => resolve({ error: `${PYTHON}: ${e.message}` }));
    child.on('close', (code) => {
      if (code !== 0) return resolve({ error: `${PYTHON} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}` });
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>);
    });
  });
}

const redis = await startPrivateRedis();
if (!redis) throw new Error('bench:capfilt needs redis-server on PATH');
const images = await serveDemoImages(seed, 384);
try {
  const model = join(work, 'blip');
  writeRandomBlip(model);
  const input = join(work, 'rows.jsonl');
  writeDemoInput(input, images.url, seed, rows);
  const prefix = promptPrefix(loadTokenizer(join(model, 'captioner')).encode('a picture of '), 30522);
  const runOurs = async (threads: number | undefined, spinning: string | undefined): Promise<Record<string, unknown>> => {
    const name = `${threads ?? 'default'}-${spinning ?? 'default'}`;
    const out = join(work, `out-${name}`);
    const loaded = loadConfig({
      env: {},
      overrides: [
        set('redis.url', redis.url), set('redis.prefix', `bench-capfilt-${name}`), set('input.path', input), set('input.format', 'jsonl'), set('output.dir', out),
        set('models.captioner', model), set('models.filter', model), set('models.precision', values.precision),
        ...(threads !== undefined ? [set('models.threads', threads)] : []),
        ...(spinning !== undefined ? [set('models.spinning', spinning)] : []),
        set('pipeline.stages', ['download', 'caption', 'filter', 'write']), set('download.ssrfAllowlist', ['127.0.0.1']),
        set('caption.k', 1), set('caption.method', 'greedy'), set('caption.maxLength', prefix.length + newTokens), set('caption.minLength', prefix.length + newTokens),
        set('shards.rows', 16),
      ],
    });
    const config = loaded.config;
    const host = new WorkerHost({ config, stages: config.pipeline.stages, log });
    await host.start();
    const t0 = performance.now();
    await host.warm(config);
    const loadS = (performance.now() - t0) / 1000;
    const waited = await waitQuiet(Number(values['quiet-wait']));
    const cpu0 = process.cpuUsage();
    const faults0 = process.resourceUsage().minorPageFault;
    const { value: s, others } = await othersShare(() => runPipeline({ loaded, workers: true, host, progress: 'none', log }));
    const cpu = process.cpuUsage(cpu0);
    const faults = process.resourceUsage().minorPageFault - faults0;
    const models = await host.modelInfo(config);
    await host.close();
    const stageMs: Record<string, number> = {};
    for (const f of readdirSync(out).filter((x) => /^\d{5}_stats\.json$/.test(x))) {
      for (const [k, v] of Object.entries(JSON.parse(readFileSync(join(out, f), 'utf8')).timings_ms as Record<string, number>)) stageMs[k] = (stageMs[k] ?? 0) + v;
    }
    const stageTotal = Object.values(stageMs).reduce((a, b) => a + b, 0);
    const precisionOf = (role: string) => ((models as Record<string, { precision?: string } | null> | null)?.[role])?.precision ?? null;
    return {
      threads: config.models.threads, spinning: config.models.spinning, batch: config.caption.batchSize,
      rows_per_s: round(s.rowsPerSec), seconds: round(s.seconds), reconciled: s.reconciled, kept: s.kept, filtered: s.filtered, failed: s.failed,
      stage_share: Object.fromEntries(Object.entries(stageMs).map(([k, v]) => [k, round(v / stageTotal, 2)])),
      stage_seconds: Object.fromEntries(Object.entries(stageMs).map(([k, v]) => [k, round(v / 1000)])),
      process_cpu_s_per_row: round((cpu.user + cpu.system) / 1e6 / rows),
      process_system_cpu_share: round(cpu.system / (cpu.user + cpu.system), 2),
      minor_page_faults_per_row: Math.round(faults / rows),
      others_cpu_share: others, quiet_wait_s: waited, model_load_s: round(loadS),
      precision: { captioner: precisionOf('captioner'), filter: precisionOf('filter') },
    };
  };
  const threadList = values.threads === undefined ? [undefined] : values.threads.split(',').map(Number);
  const spinningList = values.spinning === undefined ? [undefined] : values.spinning.split(',');
  const runs: Record<string, unknown>[] = [];
  for (const t of threadList) for (const sp of spinningList) runs.push(await runOurs(t, sp));
  const ours = runs.reduce((a, b) => ((b.rows_per_s as number) > (a.rows_per_s as number) ? b : a));
  const result: Record<string, unknown> = {
    bench: 'capfilt', machine: machine(), rows, new_tokens: newTokens, prefix_tokens: prefix.length,
    dims: 'BLIP base (random weights): vision 768/12 layers/384 px, text 768/12 layers, vocab 30524',
    ours,
    ...(runs.length > 1 ? { variants: runs.map((r) => ({ threads: r.threads, spinning: r.spinning, rows_per_s: r.rows_per_s, stage_seconds: r.stage_seconds, others_cpu_share: r.others_cpu_share })) } : {}),
  };
  if (values.hf) {
    const hfWaited = await waitQuiet(Number(values['quiet-wait']));
    const { value: hf, others: hfOthers } = await othersShare(() => torchReference(model, input, prefix, ours.batch as number, (ours.threads as number) || 2));
    result.hf = { ...hf, others_cpu_share: hfOthers, quiet_wait_s: hfWaited };
    if (typeof hf.rows_per_s === 'number') result.ours_vs_hf = round((ours.rows_per_s as number) / hf.rows_per_s, 2);
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  await images.close();
  await redis.stop();
  if (!values.keep) rmSync(work, { recursive: true, force: true });
}
