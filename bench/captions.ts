/**
 * Alt-text-like captions for the text-tower benchmarks: deterministic (seeded), 5–40 words,
 * most of them short as scraped alt text is (median about 11 words, a tail of long product and
 * stock-photo descriptions), with the punctuation, capitals, numbers, sizes and the odd HTML
 * entity real alt text carries, so the real tokenizer produces realistic token counts.
 */

const SUBJECTS = [
  'woman', 'man', 'dog', 'cat', 'child', 'family', 'couple', 'car', 'bicycle', 'house', 'kitchen', 'living room',
  'mountain', 'beach', 'city skyline', 'street', 'bridge', 'garden', 'flower', 'tree', 'forest', 'lake', 'river',
  'sunset', 'sandwich', 'pizza', 'coffee cup', 'laptop', 'smartphone', 'sneakers', 'dress', 't-shirt', 'handbag',
  'watch', 'chair', 'sofa', 'bedroom', 'wedding', 'concert', 'football player', 'horse', 'bird', 'train', 'airplane',
];
const ADJECTIVES = [
  'red', 'blue', 'green', 'black', 'white', 'vintage', 'modern', 'rustic', 'cozy', 'beautiful', 'small', 'large',
  'old', 'new', 'wooden', 'leather', 'colorful', 'happy', 'young', 'elegant', 'minimalist', 'handmade', 'organic',
  'luxury', 'cheap', 'bright', 'dark', 'foggy', 'sunny', 'snowy', 'abstract', 'retro', 'premium', 'waterproof',
];
const VERBS = ['standing', 'sitting', 'walking', 'running', 'parked', 'lying', 'playing', 'smiling', 'looking', 'holding', 'reading', 'cooking'];
const PREPS = ['on', 'in', 'near', 'under', 'next to', 'behind', 'in front of', 'at', 'with', 'by'];
const PLACES = [
  'the street', 'the beach', 'a park', 'the city', 'a table', 'the snow', 'the grass', 'a white background', 'the studio',
  'New York', 'Paris', 'Tokyo', 'London', 'the mountains', 'the office', 'a cafe', 'the market', 'the window',
];
const TAILS = [
  'stock photo', 'royalty free image', 'high resolution', 'HD wallpaper', 'free shipping', 'for sale', 'best price',
  'size M', '100% cotton', 'limited edition', 'close-up', 'aerial view', 'illustration', 'vector', '4K', 'Photo by John Smith',
  'Tom &amp; Jerry', 'x 2', '(2019)', '- Etsy', '| Amazon.com', 'on Pinterest',
];

/** xorshift32 in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Word count in 5..40: log-normal around 11 words, clamped. */
function wordCount(r: () => number): number {
  const z = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return Math.max(5, Math.min(40, Math.round(Math.exp(Math.log(11) + 0.55 * z))));
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)];
}

function clause(r: () => number): string {
  const parts = [r() < 0.5 ? 'a' : 'the', pick(r, ADJECTIVES)];
  if (r() < 0.4) parts.push(pick(r, ADJECTIVES));
  parts.push(pick(r, SUBJECTS), pick(r, VERBS), pick(r, PREPS), pick(r, PLACES));
  return parts.join(' ');
}

/** One caption of exactly `words` whitespace-separated words. */
function caption(r: () => number, words: number): string {
  const pieces: string[] = [];
  let n = 0;
  while (n < words) {
    const piece = r() < 0.25 ? pick(r, TAILS) : clause(r);
    pieces.push(piece);
    n += piece.split(' ').length;
  }
  let text = pieces.join(r() < 0.5 ? ', ' : ' ').split(' ').slice(0, words).join(' ');
  if (r() < 0.5) text = text[0].toUpperCase() + text.slice(1);
  if (r() < 0.3) text += '.';
  return text;
}

/** `n` captions, 5–40 words each, the same for a given seed. */
export function altTextCaptions(n: number, seed = 0x5eed): string[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => caption(r, wordCount(r)));
}
