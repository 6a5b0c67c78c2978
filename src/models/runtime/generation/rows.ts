/**
 * Greedy decoding and sampling: every row is decoded on its own, as in HF greedy_search /
 * sample. A row stops at eos (BLIP passes sep as eos); HF keeps feeding such rows pad tokens
 * until the whole batch stops, which changes nothing for the other rows, so finished rows are
 * dropped from the session instead (cheaper) and their sequences end at eos. The length cap
 * counts the prefix (bos + prompt), and at least one token is generated, as in HF.
 */
import type { DecoderSession, GenerationOptions, RowProbabilities, SpecialIds } from './types.ts';
import { applyAll, argmax, minLength, repetitionPenalty, softmaxFill, temperature, topK, topPKept, type LogitsProcessor } from './processors.ts';
import { sampleRng, type Rng } from './rng.ts';

interface Row {
  image: number;
  tokens: number[];
  rng: Rng | null;
}

export async function decodeRows(
  session: DecoderSession,
  prefix: number[][],
  options: GenerationOptions,
  special: SpecialIds,
  sampleKeys: string[],
): Promise<number[][][]> {
  const sampling = options.method === 'nucleus';
  const k = sampling ? options.numReturnSequences : 1;
  const processors: (LogitsProcessor | null)[] = [repetitionPenalty(options.repetitionPenalty), minLength(options.minLength, special.eos)];
  if (sampling) processors.push(temperature(options.temperature), topK(options.topK));
  // Sampling's probabilities: softmax of the processed scores, with weights proportional to them
  // that the nucleus is renormalised by. In JS each row's exps are the weights (exact as HF's
  // second softmax over the nucleus); from the session's runtime the probabilities are.
  const draw = (probs: Float32Array, weights: ArrayLike<number>, rng: Rng): number =>
    options.topP < 1 ? sampleTopP(probs, weights, options.topP, rng) : sample(probs, rng);
  const fromRuntime = sampling && session.softmax !== undefined;
  const rows: Row[] = [];
  for (let i = 0; i < prefix.length; i++) {
    for (let r = 0; r < k; r++) rows.push({ image: i, tokens: [...prefix[i]], rng: sampling ? sampleRng(options.seed, sampleKeys[i], r) : null });
  }
  // The prefix is run once per image; the K sample rows of an image share it and are split
  // off afterwards by `select`, which copies the cache.
  let logits = await session.step(prefix.map((p) => [...p]));
  let logitsRow = (j: number) => rows[j].image;
  if (k > 1) session.select(rows.map((r) => r.image));
  let active = rows;
  // Each row's scores are edited in place by the processors, in one reused array; with the
  // runtime's softmax, in one matrix of all rows (rows only ever drop out), whose softmax is
  // then one run.
  const scores = new Float32Array(fromRuntime ? rows.length * session.vocabSize : session.vocabSize);
  const probs = new Float32Array(fromRuntime ? 0 : session.vocabSize);
  const exps = new Float64Array(fromRuntime ? 0 : session.vocabSize);
  for (;;) {
    const v = session.vocabSize;
    if (fromRuntime) {
      for (let j = 0; j < active.length; j++) {
        const at = logitsRow(j);
        const row = scores.subarray(j * v, (j + 1) * v);
        row.set(logits.subarray(at * v, (at + 1) * v));
        applyAll(processors, row, active[j]);
      }
      const all = await session.softmax!(scores, active.length);
      for (let j = 0; j < active.length; j++) {
        const p = all.probs.subarray(j * v, (j + 1) * v);
        // A confident step's nucleus lies inside the row's most likely tokens: read it off them.
        const kept = options.topP < 1 && all.top ? nucleusOfTop(all.top, j, options.topP) : null;
        active[j].tokens.push(kept ? drawFrom(kept, p, active[j].rng!) : draw(p, p, active[j].rng!));
      }
    } else {
      for (let j = 0; j < active.length; j++) {
        const row = active[j];
        const at = logitsRow(j);
        scores.set(logits.subarray(at * v, (at + 1) * v));
        applyAll(processors, scores, row);
        if (row.rng) {
          softmaxFill(scores, probs, exps);
          row.tokens.push(draw(probs, exps, row.rng));
        } else {
          row.tokens.push(argmax(scores));
        }
      }
    }
    const keep: number[] = [];
    for (let j = 0; j < active.length; j++) {
      const t = active[j].tokens;
      if (t[t.length - 1] !== special.eos && t.length < options.maxLength) keep.push(j);
    }
    if (keep.length === 0) break;
    if (keep.length < active.length) {
      session.select(keep);
      active = keep.map((j) => active[j]);
    }
    logits = await session.step(active.map((r) => [r.tokens[r.tokens.length - 1]]));
    logitsRow = (j) => j;
  }

  const out: number[][][] = prefix.map(() => []);
  for (const r of rows) out[r.image].push(r.tokens);
  return out;
}

/** torch.multinomial over a row's softmax `probs`: the first token whose cumulative probability passes u. */
function sample(probs: Float32Array, rng: Rng): number {
  const u = rng.next();
  let cum = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cum += probs[i];
    last = i;
    if (u < cum) return i;
  }
  return last;
}

/**
 * The nucleus of row `j` from its most likely tokens (`top`, most likely first), in ascending
 * ids, where they hold it: going down, each token is kept while the probability kept before it
 * is below p, as `topPKept` decides; null where all k together stay below p.
 */
function nucleusOfTop(top: NonNullable<RowProbabilities['top']>, j: number, p: number): Int32Array | null {
  const { k } = top;
  let cum = 0;
  let n = 0;
  while (n < k && (n === 0 || cum < p)) cum += top.probs[j * k + n++];
  if (cum < p) return null;
  return top.ids.slice(j * k, j * k + n).sort();
}

let maskScratch = new Uint8Array(0);
let orderScratch = new Int32Array(0);

/**
 * topP then sample, as the topP processor followed by `sample` computes them, without a second
 * softmax over the vocabulary or writing −inf into it: after the nucleus is chosen (from
 * `probs`) only its tokens are visited (`drawFrom`). `weights` are the row's exp(s − max) as
 * its softmax computed them (then these are HF's numbers: exp(s − max) with the same max is the
 * same number) or the probabilities themselves.
 */
function sampleTopP(probs: Float32Array, weights: ArrayLike<number>, p: number, rng: Rng): number {
  const unordered = topPKept(probs, p);
  // Ascending ids (the order `sample` visits the vocabulary in), read off a mask: a sort of a
  // nucleus that holds most of the vocabulary costs milliseconds per row.
  if (maskScratch.length < probs.length) {
    maskScratch = new Uint8Array(probs.length);
    orderScratch = new Int32Array(probs.length);
  }
  const mask = maskScratch;
  for (const i of unordered) mask[i] = 1;
  let n = 0;
  for (let i = 0; i < probs.length; i++) {
    if (mask[i]) {
      orderScratch[n++] = i;
      mask[i] = 0;
    }
  }
  return drawFrom(orderScratch.subarray(0, n), weights, rng);
}

/**
 * A draw from the nucleus `kept` (ascending ids, the order `sample` visits the vocabulary in),
 * each token with probability weights[i] / Σ weights over the nucleus, rounded to float32 as a
 * softmax over the nucleus would be.
 */
function drawFrom(kept: Int32Array, weights: ArrayLike<number>, rng: Rng): number {
  let sum = 0;
  for (const i of kept) sum += weights[i];
  const u = rng.next();
  let cum = 0;
  const f = new Float32Array(1);
  for (const i of kept) {
    f[0] = weights[i];
    f[0] = f[0] / sum;
    if (f[0] === 0) continue;
    cum += f[0];
    if (u < cum) return i;
  }
  for (let k = kept.length - 1; k >= 0; k--) {
    f[0] = weights[kept[k]];
    if (f[0] / sum !== 0) return kept[k];
  }
  return kept[kept.length - 1];
}
