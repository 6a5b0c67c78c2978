/**
 * A realistic producer of pipeline statistics for the dashboard and stats tests: demo-domain
 * pairs (real rendered images, the generator's noise labels) turned into RowRecords the way the
 * stages fill them, with scores that separate correct texts from noise as a trained filter does,
 * recorded through the real StatsWriter shard by shard and stage by stage.
 */
import { generateDemoPair, groundTruthCaption, renderScene, Rng, type DemoPair } from '../../src/demo/index.ts';
import type { RowRecord, ScoredText } from '../../src/core/records.ts';
import type { StatsWriter } from '../../src/telemetry/stats.ts';

const FAILURES = ['DOWNLOAD_HTTP_STATUS', 'DOWNLOAD_TIMEOUT', 'IMAGE_TOO_SMALL', 'DOWNLOAD_DNS_FAILED'];

function scoreFor(label: string, rng: Rng): { itm: number; itc: number } {
  const u = (a: number, b: number) => a + (b - a) * rng.next();
  switch (label) {
    case 'correct': return { itm: u(0.62, 0.99), itc: u(0.32, 0.62) };
    case 'swapped': return { itm: u(0.15, 0.7), itc: u(0.2, 0.45) };
    case 'mismatched': return { itm: u(0.01, 0.3), itc: u(0.02, 0.28) };
    default: return { itm: u(0.0, 0.12), itc: u(-0.12, 0.14) };
  }
}

export interface DemoRow {
  pair: DemoPair;
  record: RowRecord;
}

/** One demo row as it looks after the write stage (scores, decision, selected caption). */
export function demoRecord(seed: number, index: number, threshold = 0.5): DemoRow {
  const pair = generateDemoPair(seed, index);
  const rng = new Rng(seed * 7919 + index);
  const key = String(index).padStart(9, '0');
  const base: RowRecord = {
    key, rowIndex: index, url: `http://127.0.0.1/img/${pair.key}.jpg`, text: pair.webText,
    extra: { noise: pair.label }, trusted: false, status: 'pending', reason: null, reasonDetail: null,
    image: null, captions: [], scores: [], selected: null, fetch: null,
  };
  if (rng.next() < 0.05) {
    const reason = rng.pick(FAILURES);
    return { pair, record: { ...base, status: 'failed', reason, reasonDetail: `${reason} for ${base.url}`, fetch: { httpStatus: reason === 'DOWNLOAD_HTTP_STATUS' ? 404 : null, finalUrl: base.url, bytes: 0, attempts: 2, ms: 120 } } };
  }
  const synthetic = groundTruthCaption(pair.scene);
  const web = scoreFor(pair.label, rng);
  const syn = rng.next() < 0.12 ? scoreFor('swapped', rng) : scoreFor('correct', rng);
  const scores: ScoredText[] = [
    { text: pair.webText, source: 'web', ...web, kept: web.itm >= threshold },
    { text: synthetic, source: 'synthetic', ...syn, kept: syn.itm >= threshold },
  ];
  const kept = scores.filter((s) => s.kept);
  return {
    pair,
    record: {
      ...base,
      status: kept.length ? 'kept' : 'filtered',
      reason: kept.length ? null : 'FILTER_NO_TEXT_KEPT',
      image: { ref: key, width: 384, height: 384, originalWidth: 256, originalHeight: 256, sha256: key.padStart(64, '0'), format: 'jpg' },
      captions: [synthetic],
      scores,
      selected: kept[0]?.text ?? null,
      fetch: { httpStatus: 200, finalUrl: base.url, bytes: 9000, attempts: 1, ms: 35 },
    },
  };
}

export interface ProducerOptions {
  writer: StatsWriter;
  runId: string;
  seed?: number;
  shards: number;
  shardRows: number;
  itmThreshold?: number;
}

/** Feeds shards through download → caption → filter → write counters, as the workers will. */
export class DemoStatsProducer {
  readonly total: number;
  private readonly seed: number;

  constructor(private readonly o: ProducerOptions) {
    this.total = o.shards * o.shardRows;
    this.seed = o.seed ?? 7;
  }

  async register(startedAt = Date.now()): Promise<void> {
    await this.o.writer.registerRun({
      runId: this.o.runId, input: 'demo/pairs.parquet', totalRows: this.total, totalShards: this.o.shards, startedAt,
      stages: ['download', 'caption', 'filter', 'write'], itmThreshold: this.o.itmThreshold ?? 0.5,
      labels: { captioner: 'models/demo', filter: 'models/demo' },
    });
  }

  /** Records shard `i` through all four stages; `at` backdates it (history before the page opened). */
  async shard(i: number, at = Date.now()): Promise<RowRecord[]> {
    const rows = Array.from({ length: this.o.shardRows }, (_, j) => demoRecord(this.seed, i * this.o.shardRows + j, this.o.itmThreshold));
    const records = rows.map((r) => r.record);
    const byKey = new Map(rows.map((r) => [r.record.key, r.pair]));
    const shardId = `demo-${String(i).padStart(5, '0')}`;
    const asPending = records.map((r) => (r.status === 'failed' ? r : { ...r, status: 'pending' as const, reason: null, scores: [], captions: [] }));
    // Stages finish a shard one after another, so each stage's throughput leads the next one's.
    const now = at;
    await this.o.writer.recordRows(this.o.runId, 'download', asPending, { shardId, at: now - 1500 });
    await this.o.writer.recordRows(this.o.runId, 'caption', asPending, { shardId, at: now - 1000 });
    await this.o.writer.recordRows(this.o.runId, 'filter', records, { shardId, at: now - 500 });
    await this.o.writer.recordRows(this.o.runId, 'write', records, {
      shardId,
      at: now,
      loadImage: async (r) => {
        const pair = byKey.get(r.key);
        return pair ? renderScene(pair.scene, { size: 256, format: 'jpeg', quality: 88 }) : null;
      },
    });
    return records;
  }
}
