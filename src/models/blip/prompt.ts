/**
 * Prompt handling as BLIP does it. The processor tokenizes the prompt as `[cls, p…, sep]`;
 * BlipForConditionalGeneration.generate overwrites position 0 with bos ([DEC]) and drops the
 * last token, so decoding starts from `[bos, p…]` (just `[bos]` without a prompt).
 */

export function promptPrefix(promptIds: number[], bos: number): number[] {
  if (promptIds.length < 2) return [bos];
  return [bos, ...promptIds.slice(1, -1)];
}
