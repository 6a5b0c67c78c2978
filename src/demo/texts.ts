import { Rng } from './prng.ts';

/**
 * Junk "alt text" as scraped pages carry it: camera file names, UI strings, boilerplate, empty
 * strings and long keyword spam. None of it describes the image.
 */

const UI_STRINGS = [
  'click to enlarge', 'image', 'photo', 'untitled', 'no description available', 'thumbnail',
  'view full size', 'loading...', 'placeholder image', 'logo', 'banner', 'click here',
  'download now', 'see more', 'read more', 'image not found', 'main picture', 'product image',
];

const BOILERPLATE = [
  'Copyright (c) {year} All rights reserved.',
  'Stock photo - royalty free image',
  'Posted by admin on {month} {day}, {year}',
  'Share on Facebook Twitter Pinterest',
  'Image courtesy of the author',
  'Terms of use | Privacy policy | Contact us',
  'Photo by {name} on our website',
  'Subscribe to our newsletter for more updates',
];

const SPAM_WORDS = [
  'buy', 'cheap', 'best', 'price', 'free', 'shipping', 'discount', 'sale', 'online', 'shop', 'now',
  'limited', 'offer', 'deal', 'click', 'here', 'win', 'prize', 'casino', 'loans', 'top', 'quality',
  'new', 'hot', 'amazing', 'wholesale', 'store', 'order', 'today', 'save', 'money', 'fast',
  'delivery', 'official', 'brand', 'original', 'guaranteed', 'bonus', 'vip', 'exclusive',
];

const MONTHS = ['January', 'March', 'May', 'July', 'September', 'November'];
const NAMES = ['John', 'Maria', 'admin', 'Alex', 'Sam', 'Kim'];

function digits(rng: Rng, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String(rng.int(0, 9));
  return s;
}

function fileName(rng: Rng): string {
  switch (rng.int(0, 5)) {
    case 0: return `IMG_${digits(rng, 4)}.jpg`;
    case 1: return `DSC${digits(rng, 5)}.JPG`;
    case 2: return `image${rng.int(1, 99)}.png`;
    case 3: return `photo-${digits(rng, 3)}.jpeg`;
    case 4: return `${rng.int(0, 0xffffffff).toString(16).padStart(8, '0')}.webp`;
    default: return `Screenshot ${rng.int(2015, 2024)}-0${rng.int(1, 9)}-1${rng.int(0, 9)} at ${rng.int(10, 23)}.${digits(rng, 2)}.png`;
  }
}

function boilerplate(rng: Rng): string {
  return rng.pick(BOILERPLATE)
    .replace('{year}', String(rng.int(2008, 2024)))
    .replace('{month}', rng.pick(MONTHS))
    .replace('{day}', String(rng.int(1, 28)))
    .replace('{name}', rng.pick(NAMES));
}

function spam(rng: Rng): string {
  const n = rng.int(20, 40);
  const words: string[] = [];
  for (let i = 0; i < n; i++) words.push(rng.pick(SPAM_WORDS));
  if (rng.chance(0.5)) words.splice(rng.int(0, words.length), 0, `www.${rng.pick(SPAM_WORDS)}${rng.pick(SPAM_WORDS)}.com`);
  return words.join(' ');
}

export type JunkKind = 'filename' | 'ui' | 'empty' | 'boilerplate' | 'spam';

export function junkText(rng: Rng): { kind: JunkKind; text: string } {
  const r = rng.next();
  if (r < 0.3) return { kind: 'filename', text: fileName(rng) };
  if (r < 0.55) return { kind: 'ui', text: rng.pick(UI_STRINGS) };
  if (r < 0.65) return { kind: 'empty', text: rng.pick(['', ' ', '  ']) };
  if (r < 0.85) return { kind: 'boilerplate', text: boilerplate(rng) };
  return { kind: 'spam', text: spam(rng) };
}

/** Cosmetic noise a human-written correct caption often has; does not change the meaning. */
export function cosmetic(text: string, rng: Rng): string {
  let out = text;
  if (rng.chance(0.5)) out = out.charAt(0).toUpperCase() + out.slice(1);
  if (rng.chance(0.3)) out += '.';
  return out;
}
