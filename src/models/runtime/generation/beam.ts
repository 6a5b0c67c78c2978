/**
 * Beam search as Hugging Face's BeamSearchScorer (transformers 4.37) runs it, per image:
 *
 * - each image holds numBeams rows; initial beam scores are [0, -1e9, …] so the first step
 *   expands beam 0 only (run once per image here, then fanned out);
 * - a step scores log_softmax(logits) after the processors (repetition penalty, min length),
 *   adds each beam's running sum, and takes the best 2·numBeams (beam, token) candidates;
 * - in rank order, an eos candidate ranked below numBeams is ignored, a higher-ranked one
 *   moves its beam (without the eos) into the image's bank of finished hypotheses, scored
 *   sum_logprobs / generated_len^length_penalty (generated_len counts the eos, not the
 *   prefix); the other candidates become the next beams until numBeams are chosen;
 * - the bank keeps the numBeams best; an image is done (early_stopping=False) once the bank
 *   is full and its worst score ≥ best candidate sum / (cur_len − prefix_len)^length_penalty;
 * - at max_length, unfinished images add their live beams to the bank; the best
 *   numReturnSequences hypotheses are returned, each followed by eos when shorter than
 *   max_length.
 *
 * Images are independent: a done image's rows are dropped from the session (HF pads them).
 */
import { CapfiltError } from '../../../core/errors.ts';
import type { DecoderSession, GenerationOptions, SpecialIds } from './types.ts';
import { applyAll, logProbsInto, logSoftmaxInto, minLength, repetitionPenalty, type LogitsProcessor } from './processors.ts';

interface Hypothesis { score: number; tokens: number[] }

interface ImageBeams {
  image: number;
  rows: number[][];
  scores: number[];
  bank: Hypothesis[];
  worst: number;
  done: boolean;
}

interface Candidate { score: number; token: number; beam: number }

export async function beamSearch(session: DecoderSession, prefix: number[][], options: GenerationOptions, special: SpecialIds): Promise<number[][][]> {
  const nb = options.numBeams;
  const lp = options.lengthPenalty;
  const promptLen = prefix[0].length;
  const processors: (LogitsProcessor | null)[] = [repetitionPenalty(options.repetitionPenalty), minLength(options.minLength, special.eos)];

  const images: ImageBeams[] = prefix.map((p, image) => ({
    image,
    rows: Array.from({ length: nb }, () => [...p]),
    scores: Array.from({ length: nb }, (_, j) => (j === 0 ? 0 : -1e9)),
    bank: [],
    worst: 1e9,
    done: false,
  }));
  const addHypothesis = (im: ImageBeams, tokens: number[], sum: number, generatedLen: number) => {
    const score = sum / generatedLen ** lp;
    if (im.bank.length < nb || score > im.worst) {
      im.bank.push({ score, tokens });
      if (im.bank.length > nb) {
        const sorted = im.bank.map((h, i) => [h.score, i] as const).sort((a, b) => a[0] - b[0]);
        im.bank.splice(sorted[0][1], 1);
        im.worst = sorted[1][0];
      } else {
        im.worst = Math.min(score, im.worst);
      }
    }
  };

  // The first step runs the prefix once per image: every beam of an image is still the same
  // sequence, so the other rows would be wasted work. The first `select` fans them out.
  let active = images;
  let rowsPerImage = 1;
  // log_softmax over each row: from the session's log-sum-exp where it gives one (a subtraction
  // per token), else computed here (a pass of exp per token, the larger part of the search).
  const step = async (tokens: number[][]): Promise<{ logits: Float32Array; logSumExp: Float32Array | null }> =>
    session.stepWithLogSumExp ? session.stepWithLogSumExp(tokens) : { logits: await session.step(tokens), logSumExp: null };
  let { logits, logSumExp } = await step(prefix.map((p) => [...p]));
  // Each row's log-probabilities in one reused array (consumed before the next row's).
  const scratch = new Float32Array(session.vocabSize);
  for (;;) {
    const v = session.vocabSize;
    const curLen = active[0].rows[0].length + 1;
    const parents: number[] = [];
    active.forEach((im, a) => {
      const candidates: Candidate[] = [];
      let scores: Float32Array | null = null;
      for (let j = 0; j < nb; j++) {
        // On the first step all beams read the image's single row (their −1e9 scores keep
        // them behind beam 0 unless beam 0 has too few finite continuations, as in HF).
        if (rowsPerImage > 1 || scores === null) {
          const row = a * rowsPerImage + (rowsPerImage > 1 ? j : 0);
          const rowLogits = logits.subarray(row * v, (row + 1) * v);
          scores = logSumExp ? logProbsInto(rowLogits, logSumExp[row], scratch) : logSoftmaxInto(rowLogits, scratch);
          applyAll(processors, scores, { tokens: im.rows[j] });
        }
        topCandidates(scores, im.scores[j], j, 2 * nb, candidates);
      }
      candidates.sort((x, y) => y.score - x.score);
      const chosen: Candidate[] = [];
      for (let rank = 0; rank < candidates.length && chosen.length < nb; rank++) {
        const c = candidates[rank];
        if (c.token === special.eos) {
          if (rank < nb) addHypothesis(im, im.rows[c.beam], c.score, curLen - promptLen);
        } else {
          chosen.push(c);
        }
      }
      if (chosen.length < nb) {
        throw new CapfiltError('CONFIG_INVALID', `beam search: only ${chosen.length} continuations for ${nb} beams at length ${curLen}; lower numBeams`, { numBeams: nb });
      }
      const best = candidates[0].score;
      im.done = im.done || (im.bank.length >= nb && im.worst >= best / (curLen - promptLen) ** lp);
      im.rows = chosen.map((c) => [...im.rows[c.beam], c.token]);
      im.scores = chosen.map((c) => c.score);
      for (const c of chosen) parents.push(a * rowsPerImage + (rowsPerImage > 1 ? c.beam : 0));
    });
    if (curLen >= options.maxLength || active.every((im) => im.done)) break;
    const indices: number[] = [];
    const next: ImageBeams[] = [];
    active.forEach((im, a) => {
      if (im.done) return;
      next.push(im);
      indices.push(...parents.slice(a * nb, (a + 1) * nb));
    });
    session.select(indices);
    active = next;
    rowsPerImage = nb;
    ({ logits, logSumExp } = await step(active.flatMap((im) => im.rows.map((r) => [r[r.length - 1]]))));
  }

  return images.map((im) => {
    if (!im.done) {
      for (let j = 0; j < nb; j++) addHypothesis(im, im.rows[j], im.scores[j], im.rows[j].length - promptLen);
    }
    const best = [...im.bank].sort((a, b) => b.score - a.score).slice(0, options.numReturnSequences);
    return best.map((h) => (h.tokens.length < options.maxLength ? [...h.tokens, special.eos] : h.tokens));
  });
}

/** Pushes the row's best `count` tokens, with the beam's running sum added, onto `out`. */
function topCandidates(scores: Float32Array, beamScore: number, beam: number, count: number, out: Candidate[]): void {
  const top: Candidate[] = [];
  // The score a token must beat to enter, kept in a local: this loop runs once per token of
  // every row's vocabulary, and reading the bar off `top` each time took twice as long (3.0
  // against 1.4 ms for 24 rows of 30,524).
  let bar = -Infinity;
  for (let t = 0; t < scores.length; t++) {
    const s = scores[t];
    if (s <= bar) continue;
    const c = { score: s + beamScore, token: t, beam };
    let i = top.length;
    top.push(c);
    while (i > 0 && top[i - 1].score < c.score) { top[i] = top[i - 1]; i--; }
    top[i] = c;
    if (top.length > count) top.pop();
    if (top.length === count) bar = top[count - 1].score - beamScore;
  }
  out.push(...top);
}
