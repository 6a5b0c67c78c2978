/**
 * The search around the decoder step, alone: `npm run bench:search`. Prints one JSON object.
 * A decoder of zero cost (fixed logits per step, BLIP's vocabulary of 30,524) is decoded at
 * batch 8 for 20 new tokens, so all that is timed is what generation does around a step: the
 * logits processors, the softmax or log-softmax, the nucleus and the draw, the beam candidates.
 * Each variant runs with the row graphs (softmax and log-sum-exp in ONNX Runtime, as the
 * captioner runs) and without (the same in JS), and nucleus also with the softmax graph's
 * probabilities but not its sorted top tokens, alternately in this one process; figures are
 * medians over the rounds, and `same_sequences` says whether all gave the same tokens.
 * Logits are Gaussian: σ 1 is a flat distribution (a random-weight model's: ~18,600 tokens in a
 * top-p 0.9 nucleus), σ 4 a peaked one (~200 tokens), σ 8 a confident one (~5 tokens, inside the
 * 64 most likely tokens the softmax graph returns sorted, so the nucleus is read off them).
 * Options: --rounds N (default 8), --batch B (default 8).
 */
import { generate } from '../src/models/runtime/generation/index.ts';
import type { DecoderSession, GenerationOptions, SpecialIds } from '../src/models/runtime/generation/types.ts';
import { createRowGraphs, releaseRowGraphs, type RowGraphs } from '../src/models/runtime/row-graphs.ts';
import { machine, othersShare, round } from './timing.ts';

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : def);
const rounds = opt('--rounds', 8);
const B = opt('--batch', 8);
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(B) || B < 1) throw new Error('--rounds and --batch: whole numbers ≥ 1');
const V = 30524;
const NEW = 20;
const special: SpecialIds = { bos: 101, eos: 102, pad: 0, sep: 102, cls: 101 };
const prefix = Array.from({ length: B }, () => [101, 1037, 3861, 1997]);
const keys = prefix.map((_, i) => `k${i}`);

/** Fixed logits: step s, row r reads rows [r] of table s (as many rows as beams need). */
class FixedLM implements DecoderSession {
  readonly vocabSize = V;
  rows = B;
  private n = 0;
  readonly stepWithLogSumExp?: DecoderSession['stepWithLogSumExp'];
  readonly softmax?: DecoderSession['softmax'];
  /** `withTop` false: the softmax graph's probabilities without its sorted most likely tokens. */
  constructor(private readonly tables: Float32Array[], graphs: RowGraphs | null, withTop = true) {
    if (graphs) {
      this.stepWithLogSumExp = async (tokens) => {
        const logits = await this.step(tokens);
        return { logits, logSumExp: await graphs.logSumExp.run(logits, this.rows, V) };
      };
      this.softmax = async (scores, rows) => {
        const all = await graphs.softmax.run(scores, rows, V);
        return withTop ? all : { probs: all.probs };
      };
    }
  }
  async step(tokens: number[][]): Promise<Float32Array> {
    this.rows = tokens.length;
    return this.tables[this.n++ % this.tables.length].subarray(0, tokens.length * V);
  }
  select(indices: number[]): void {
    this.rows = indices.length;
  }
  close(): void {}
}

function gaussianTables(sigma: number, rows: number): Float32Array[] {
  let s = 42;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  return Array.from({ length: NEW + 1 }, () => Float32Array.from({ length: rows * V }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) * sigma));
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base: GenerationOptions = {
  method: 'greedy', maxLength: prefix[0].length + NEW, minLength: prefix[0].length + NEW, numBeams: 3, lengthPenalty: 1, topP: 0.9, topK: 0,
  temperature: 1, repetitionPenalty: 1.1, numReturnSequences: 1, prompt: '', seed: 0,
};

const graphs = await createRowGraphs(1);
const results: Record<string, unknown> = {};
try {
  for (const sigma of [1, 4, 8]) {
    const tables = gaussianTables(sigma, B * base.numBeams);
    for (const method of ['greedy', 'nucleus', 'beam'] as const) {
      const opts = { ...base, method };
      const variants = method === 'nucleus' ? (['js', 'ort', 'ort_probs_only'] as const) : (['js', 'ort'] as const);
      type Variant = (typeof variants)[number];
      const ms: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v, []]));
      const out: Record<string, string> = {};
      let others = 0;
      // One untimed run of each first (JIT, ORT's first runs), then rounds in alternating order.
      for (let r = -1; r < rounds; r++) {
        const order: readonly Variant[] = r % 2 === 0 ? variants : [...variants].reverse();
        for (const variant of order) {
          const t = performance.now();
          const lm = new FixedLM(tables, variant === 'js' ? null : graphs, variant === 'ort');
          const { value, others: o } = await othersShare(() => generate(lm, prefix, opts, special, keys));
          if (r < 0) continue;
          ms[variant].push((performance.now() - t) / NEW);
          out[variant] = JSON.stringify(value);
          others = Math.max(others, o ?? 0);
        }
      }
      results[`sigma_${sigma}_${method}`] = {
        ms_per_token_js: round(median(ms.js), 2),
        ms_per_token_ort: round(median(ms.ort), 2),
        ...(ms.ort_probs_only ? { ms_per_token_ort_probs_only: round(median(ms.ort_probs_only), 2) } : {}),
        js_over_ort: round(median(ms.js) / median(ms.ort), 2),
        same_sequences: Object.values(out).every((o) => o === out.js),
        others_cpu_share: round(others, 2),
      };
    }
  }
} finally {
  await releaseRowGraphs(graphs);
}
console.log(JSON.stringify({ bench: 'search', machine: machine(), batch: B, vocab: V, new_tokens: NEW, rounds, note: 'ms per token: a generation\'s wall time over its new tokens, the decoder costing nothing; js: softmax / log-sum-exp in JS, ort: from the row graphs, ort_probs_only: the softmax graph\'s probabilities without its sorted top tokens', ...results }, null, 2));
