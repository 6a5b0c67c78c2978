import { createHash } from 'node:crypto';
import sharp, { type Metadata, type Sharp } from 'sharp';
import type { ErrorCode } from '../core/errors.ts';

/**
 * Turns downloaded bytes into the staged image: sniff (refuse HTML/JSON served as image/jpeg and
 * SVG, which can reference external resources), read the header with the pixel limit (a
 * decompression bomb is refused before any pixel is decoded), check the size rules on the
 * oriented dimensions, then decode once: EXIF orientation applied, first frame of animations,
 * CMYK / 16-bit / greyscale converted to 8-bit sRGB, alpha flattened on white (the models take
 * RGB; img2dataset does the same), resized with img2dataset's modes and encoded.
 *
 * Resize modes (N = `size`), as img2dataset defines them:
 *   no                  keep the image as is
 *   keep_ratio          smallest side becomes N, ratio kept
 *   keep_ratio_largest  largest side becomes N, ratio kept
 *   center_crop         smallest side becomes N, then the centre N×N is cut out
 *   border              largest side becomes N, then padded (white) to N×N
 */
export type ResizeMode = 'no' | 'border' | 'keep_ratio' | 'keep_ratio_largest' | 'center_crop';
export type OutputFormat = 'jpg' | 'webp' | 'png';

export interface ImageOptions {
  size: number;
  resizeMode: ResizeMode;
  format: OutputFormat;
  quality: number;
  /** Smallest allowed side of the original image (0: no minimum). */
  minImageSize: number;
  maxImageArea: number | null;
  /** Largest allowed long side / short side of the original image. */
  maxAspectRatio: number | null;
  limitInputPixels: number;
  /** Only shrink; smaller images keep their size. */
  resizeOnlyIfBigger: boolean;
  /** Decoder strictness: 'truncated' refuses cut-off files but tolerates harmless warnings. */
  failOn: 'none' | 'truncated' | 'error' | 'warning';
  /** sharp format ids accepted. SVG is left out on purpose. */
  allowedFormats: string[];
}

export const DEFAULT_IMAGE_OPTIONS: ImageOptions = {
  size: 384,
  resizeMode: 'center_crop',
  format: 'jpg',
  quality: 95,
  minImageSize: 0,
  maxImageArea: null,
  maxAspectRatio: null,
  limitInputPixels: 100_000_000,
  resizeOnlyIfBigger: false,
  failOn: 'truncated',
  allowedFormats: ['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif'],
};

export interface ImageSuccess {
  ok: true;
  data: Uint8Array;
  width: number;
  height: number;
  /** Original size after EXIF orientation. */
  originalWidth: number;
  originalHeight: number;
  format: OutputFormat;
  /** Decoder's name of the downloaded format (jpeg, png, gif, ...). */
  sourceFormat: string;
}
export interface ImageFailure {
  ok: false;
  code: ErrorCode;
  detail: string;
  originalWidth: number | null;
  originalHeight: number | null;
}
export type ImageResult = ImageSuccess | ImageFailure;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const WHITE = { r: 255, g: 255, b: 255, alpha: 1 };

export async function processImage(bytes: Uint8Array, options: Partial<ImageOptions> = {}, contentType: string | null = null): Promise<ImageResult> {
  const o = { ...DEFAULT_IMAGE_OPTIONS, ...options };
  const sniffed = sniff(bytes, contentType);
  if (sniffed) return fail(sniffed.code, sniffed.detail);
  if (sniffed === null) {
    if (!looksLikeSvg(bytes)) return fail('IMAGE_NOT_AN_IMAGE', `XML document${contentType ? ` served as ${contentType}` : ''}`);
    if (!o.allowedFormats.includes('svg')) {
      return fail('IMAGE_FORMAT_REFUSED', 'SVG is refused (it can reference external resources); add "svg" to allowedFormats to accept it');
    }
  }
  const input = { limitInputPixels: o.limitInputPixels, failOn: o.failOn, sequentialRead: true } as const;
  // One instance for the header read and the pipeline: sharp keeps the parsed input options.
  const img = sharp(bytes, input);
  let meta: Metadata;
  try {
    meta = await img.metadata();
  } catch (e) {
    return fromSharpError(e, contentType, null, null);
  }
  const format = meta.format ?? 'unknown';
  if (!o.allowedFormats.includes(format)) {
    return format === 'svg'
      ? fail('IMAGE_FORMAT_REFUSED', 'SVG is refused (it can reference external resources); add "svg" to allowedFormats to accept it')
      : fail('IMAGE_FORMAT_REFUSED', `format ${format} is not in allowedFormats`);
  }
  if (!meta.width || !meta.height) return fail('IMAGE_DECODE_FAILED', `${format} header has no dimensions`);
  const rotated = (meta.orientation ?? 1) >= 5;
  const w = rotated ? meta.height : meta.width;
  const h = rotated ? meta.width : meta.height;
  const sizes = { originalWidth: w, originalHeight: h };
  if (Math.min(w, h) < o.minImageSize) return { ...fail('IMAGE_TOO_SMALL', `${w}x${h} is below minImageSize ${o.minImageSize}`), ...sizes };
  if (o.maxImageArea !== null && w * h > o.maxImageArea) return { ...fail('IMAGE_TOO_LARGE', `${w}x${h} = ${w * h} px exceeds maxImageArea ${o.maxImageArea}`), ...sizes };
  const ratio = Math.max(w, h) / Math.min(w, h);
  if (o.maxAspectRatio !== null && ratio > o.maxAspectRatio) {
    return { ...fail('IMAGE_ASPECT_RATIO', `aspect ratio ${ratio.toFixed(2)} exceeds maxAspectRatio ${o.maxAspectRatio}`), ...sizes };
  }
  try {
    let s = img.autoOrient();
    // CMYK, 16-bit, greyscale and the like become 8-bit sRGB; plain sRGB JPEGs skip the op.
    if (meta.space !== 'srgb' || meta.depth !== 'uchar' || (meta.channels ?? 3) < 3) s = s.toColourspace('srgb');
    if (meta.hasAlpha) s = s.flatten({ background: WHITE });
    s = applyResize(s, o);
    s = o.format === 'jpg' ? s.jpeg({ quality: o.quality }) : o.format === 'webp' ? s.webp({ quality: o.quality }) : s.png();
    const { data, info } = await s.toBuffer({ resolveWithObject: true });
    return {
      ok: true,
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
      ...sizes,
      format: o.format,
      sourceFormat: format,
    };
  } catch (e) {
    return fromSharpError(e, contentType, w, h);
  }
}

function applyResize(s: Sharp, o: ImageOptions): Sharp {
  const common = { withoutEnlargement: o.resizeOnlyIfBigger, kernel: 'lanczos3' as const };
  switch (o.resizeMode) {
    case 'no':
      return s;
    case 'keep_ratio':
      return s.resize(o.size, o.size, { ...common, fit: 'outside' });
    case 'keep_ratio_largest':
      return s.resize(o.size, o.size, { ...common, fit: 'inside' });
    case 'center_crop':
      return s.resize(o.size, o.size, { ...common, fit: 'cover', position: 'centre' });
    case 'border':
      return s.resize(o.size, o.size, { ...common, fit: 'contain', background: WHITE });
  }
}

function fail(code: ErrorCode, detail: string): ImageFailure {
  return { ok: false, code, detail, originalWidth: null, originalHeight: null };
}

function fromSharpError(e: unknown, contentType: string | null, w: number | null, h: number | null): ImageFailure {
  const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 300);
  const sizes = { originalWidth: w, originalHeight: h };
  if (/pixel limit/i.test(msg)) return { ...fail('IMAGE_PIXEL_LIMIT', msg), ...sizes };
  if (/unsupported image format/i.test(msg)) {
    return /^(text\/|application\/(json|xml|xhtml))/i.test(contentType ?? '')
      ? { ...fail('IMAGE_NOT_AN_IMAGE', `${contentType} body is not a decodable image`), ...sizes }
      : { ...fail('IMAGE_FORMAT_UNSUPPORTED', `${msg}${contentType ? ` (served as ${contentType})` : ''}`), ...sizes };
  }
  return { ...fail('IMAGE_DECODE_FAILED', msg), ...sizes };
}

/**
 * Cheap checks on the first bytes. Returns a failure, `null` when the bytes may be SVG/XML
 * (checked next), or `undefined` to go on decoding. Known image magic numbers win over the
 * Content-Type header, which scraped servers often get wrong.
 */
function sniff(bytes: Uint8Array, contentType: string | null): { code: ErrorCode; detail: string } | null | undefined {
  if (bytes.length === 0) return { code: 'IMAGE_EMPTY', detail: 'zero-byte body' };
  if (hasImageMagic(bytes)) return undefined;
  const head = Buffer.from(bytes.subarray(0, 512)).toString('latin1').replace(/^\uFEFF|^\xEF\xBB\xBF/, '').trimStart().toLowerCase();
  if (/svg/i.test(contentType ?? '') || head.startsWith('<?xml') || head.startsWith('<svg')) return null;
  if (head.startsWith('<!doctype html') || head.startsWith('<html') || head.startsWith('<head') || head.startsWith('<body') || head.startsWith('<!--')) {
    return { code: 'IMAGE_NOT_AN_IMAGE', detail: `HTML page${contentType ? ` served as ${contentType}` : ''}` };
  }
  if (head.startsWith('{') || head.startsWith('[')) return { code: 'IMAGE_NOT_AN_IMAGE', detail: `JSON-like text${contentType ? ` served as ${contentType}` : ''}` };
  return undefined;
}

function looksLikeSvg(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 4096)).toString('latin1').toLowerCase();
  return head.includes('<svg');
}

function hasImageMagic(b: Uint8Array): boolean {
  const at = (i: number, ...v: number[]) => v.every((x, j) => b[i + j] === x);
  return (
    at(0, 0xff, 0xd8, 0xff) || // JPEG
    at(0, 0x89, 0x50, 0x4e, 0x47) || // PNG
    at(0, 0x47, 0x49, 0x46, 0x38) || // GIF
    (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) || // RIFF....WEBP
    at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a) || // TIFF
    at(4, 0x66, 0x74, 0x79, 0x70) || // ISO-BMFF (AVIF/HEIF)
    at(0, 0x42, 0x4d) // BMP (refused later as unsupported, not as "not an image")
  );
}
