/**
 * Prompt handling as BLIP does it. The processor tokenizes the prompt as `[cls, p…, sep]`;
 * BlipForConditionalGeneration.generate overwrites position 0 with bos ([DEC]) and drops the
 * last token, so decoding starts from `[bos, p…]` (just `[bos]` without a prompt). BLIP then
 * cuts the prompt off the decoded caption; cutting its tokens off the ids gives the same text.
 */

export function promptPrefix(promptIds: number[], bos: number): number[] {
  if (promptIds.length < 2) return [bos];
  return [bos, ...promptIds.slice(1, -1)];
}

/** The generated part of a sequence: after the prefix, up to (not including) eos. */
export function generatedIds(sequence: number[], prefixLength: number, eos: number): number[] {
  const rest = sequence.slice(prefixLength);
  const end = rest.indexOf(eos);
  return end < 0 ? rest : rest.slice(0, end);
}
