/**
 * `generate`: captions for a batch of images from a DecoderSession, with HF `generate`
 * semantics (see rows.ts for greedy/sampling, beam.ts for beam search).
 *
 * In:  prefix[i] = `[bos, prompt…]` for image i (all the same length; see promptPrefix),
 *      sampleKeys[i] = the image's stable key (seeds its samples).
 * Out: per image, K = numReturnSequences id sequences (1 for greedy), each starting with the
 *      prefix and ending with eos, or cut at maxLength. Sequences are not padded; hfPadded()
 *      gives the `[rows, length]` matrix HF returns.
 *
 * The session starts with one row per image; generate re-indexes rows with `select` to expand
 * them (beams, return sequences) and to drop finished ones.
 */
import { CapfiltError } from '../../../core/errors.ts';
import type { DecoderSession, GenerationOptions, SpecialIds } from './types.ts';
import { beamSearch } from './beam.ts';
import { decodeRows } from './rows.ts';


export async function generate(
  session: DecoderSession,
  prefix: number[][],
  options: GenerationOptions,
  special: SpecialIds,
  sampleKeys: string[],
): Promise<number[][][]> {
  validate(session, prefix, options, sampleKeys);
  if (prefix.length === 0) return [];
  session.reserve?.(options.maxLength);
  return options.method === 'beam' ? beamSearch(session, prefix, options, special) : decodeRows(session, prefix, options, special, sampleKeys);
}

/** HF's output layout: one row per sequence, right-padded with pad to the longest. */
export function hfPadded(sequences: number[][], pad: number): number[][] {
  const len = Math.max(0, ...sequences.map((s) => s.length));
  return sequences.map((s) => [...s, ...new Array<number>(len - s.length).fill(pad)]);
}

function validate(session: DecoderSession, prefix: number[][], o: GenerationOptions, keys: string[]): void {
  const bad = (what: string): never => {
    throw new CapfiltError('CONFIG_INVALID', `generation: ${what}`, { method: o.method });
  };
  if (!['greedy', 'beam', 'nucleus'].includes(o.method)) bad(`unknown method ${JSON.stringify(o.method)}`);
  if (session.rows !== prefix.length) bad(`session holds ${session.rows} rows for ${prefix.length} images`);
  if (keys.length !== prefix.length) bad(`${keys.length} sample keys for ${prefix.length} images`);
  if (prefix.some((p) => p.length === 0 || p.length !== prefix[0].length)) bad('every image needs a prefix of the same non-zero length');
  if (!Number.isInteger(o.maxLength) || o.maxLength < 1) bad(`maxLength must be a positive integer, got ${o.maxLength}`);
  if (!Number.isInteger(o.minLength) || o.minLength < 0) bad(`minLength must be a non-negative integer, got ${o.minLength}`);
  if (!(o.repetitionPenalty > 0)) bad(`repetitionPenalty must be > 0, got ${o.repetitionPenalty}`);
  if (!Number.isInteger(o.numReturnSequences) || o.numReturnSequences < 1) bad(`numReturnSequences must be ≥ 1, got ${o.numReturnSequences}`);
  if (o.method === 'greedy' && o.numReturnSequences !== 1) bad('greedy decoding returns one sequence per image; use beam or nucleus for more');
  if (o.method === 'beam') {
    if (!Number.isInteger(o.numBeams) || o.numBeams < 1) bad(`numBeams must be ≥ 1, got ${o.numBeams}`);
    if (o.numReturnSequences > o.numBeams) bad(`numReturnSequences (${o.numReturnSequences}) must be ≤ numBeams (${o.numBeams})`);
    if (!Number.isFinite(o.lengthPenalty)) bad(`lengthPenalty must be finite, got ${o.lengthPenalty}`);
  }
  if (o.method === 'nucleus') {
    if (!(o.temperature > 0)) bad(`temperature must be > 0, got ${o.temperature}`);
    if (!(o.topP > 0 && o.topP <= 1)) bad(`topP must be in (0, 1], got ${o.topP}`);
    if (!Number.isInteger(o.topK) || o.topK < 0) bad(`topK must be a non-negative integer (0 = off), got ${o.topK}`);
    if (!Number.isFinite(o.seed)) bad(`seed must be a number, got ${o.seed}`);
  }
}

/** The generated part of a sequence: after the prefix, up to (not including) eos. A prompt is cut
 * off the caption by cutting its tokens off the ids, which gives the same text. */
export function generatedIds(sequence: number[], prefixLength: number, eos: number): number[] {
  const rest = sequence.slice(prefixLength);
  const end = rest.indexOf(eos);
  return end < 0 ? rest : rest.slice(0, end);
}
