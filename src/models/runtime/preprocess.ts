/**
 * Image preprocessing as Hugging Face's image processors do it: decode, RGB, PIL bicubic resize,
 * rescale, normalise, channels first. Two resize rules:
 *  - `square` (BlipImageProcessor): resize to S×S, aspect ratio not kept;
 *  - `shortest-edge` (CLIPImageProcessor): shortest side to `shortestEdge` (the long side
 *    int(edge · long / short)), then a centre crop to S×S (zero padding where the image is smaller).
 *
 * Decoding, EXIF orientation and colour conversion run in sharp (libvips, off the main thread,
 * several images in flight). The resize is PIL's own bicubic, reimplemented below: libvips'
 * cubic kernel differs from PIL by up to 7 uint8 levels (≈0.1 after normalisation) on the
 * parity images, while this port reproduces PIL's coefficients, fixed-point arithmetic and
 * two-pass order exactly. A decoded image (`decodeRgb`) can feed several models' preprocessing,
 * so an image is decoded once however many model families look at it.
 *
 * Output: pixelValues float32 [N, 3, S, S]; the rows of images that fail to decode are zero
 * and their `errors[i]` says why (IMAGE_DECODE_FAILED); the other images are unaffected.
 */
import sharp, { type OutputInfo } from 'sharp';
import { CapfiltError, describeError } from '../../core/errors.ts';

export interface PreprocessConfig {
  /** S: output height and width. */
  imageSize: number;
  /** How the image reaches S×S; `square` when absent. */
  resize?: ResizeRule;
  /** Per-channel mean and std (RGB order) applied after rescaling. */
  mean: number[];
  std: number[];
  /** 1/255 for BLIP. */
  rescaleFactor: number;
}

export type ResizeRule = { mode: 'square' } | { mode: 'shortest-edge'; shortestEdge: number };

/** 8-bit sRGB, HWC, 3 channels, EXIF orientation applied. */
export interface DecodedRgb {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface PreprocessOptions {
  /** Images larger than this many pixels are refused before decoding (sharp's limitInputPixels). */
  limitInputPixels?: number;
  /** Images decoded at the same time (libuv threadpool); 4 measured best on 2 cores. */
  concurrency?: number;
}

export interface PreprocessResult {
  pixelValues: Float32Array;
  errors: ({ code: string; message: string } | null)[];
}

const DEFAULT_LIMIT_PIXELS = 100_000_000;

export async function preprocessImages(images: Uint8Array[], cfg: PreprocessConfig, options: PreprocessOptions = {}): Promise<PreprocessResult> {
  const decoded = await decodeImages(images, options);
  return pixelValuesOf(decoded, cfg);
}

/** Decodes every image (a few in flight); a failure is that image's coded error, never a throw. */
export async function decodeImages(images: Uint8Array[], options: PreprocessOptions = {}): Promise<(DecodedRgb | { code: string; message: string })[]> {
  const out: (DecodedRgb | { code: string; message: string })[] = new Array(images.length);
  const limit = Math.max(1, options.concurrency ?? 4);
  let next = 0;
  const worker = async () => {
    while (next < images.length) {
      const i = next++;
      try {
        out[i] = await decodeRgb(images[i], options.limitInputPixels, i);
      } catch (e) {
        out[i] = describeError(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, images.length) }, worker));
  return out;
}

/** Pixel values of already decoded images, by the model's resize rule and normalisation. */
export function pixelValuesOf(decoded: (DecodedRgb | { code: string; message: string })[], cfg: PreprocessConfig): PreprocessResult {
  const s = cfg.imageSize;
  const plane = 3 * s * s;
  const pixelValues = new Float32Array(decoded.length * plane);
  const errors: PreprocessResult['errors'] = decoded.map((d) => ('code' in d ? d : null));
  decoded.forEach((d, i) => {
    if ('code' in d) return;
    pixelValuesInto(d, cfg, pixelValues.subarray(i * plane, (i + 1) * plane));
  });
  return { pixelValues, errors };
}

/** One decoded image's pixel values [3, S, S] into `out` (e.g. its slot of a batch buffer). */
export function pixelValuesInto(d: DecodedRgb, cfg: PreprocessConfig, out: Float32Array): void {
  normalizeInto(resizeForModel(d, cfg), cfg.imageSize, cfg, out);
}

/** The S×S×3 uint8 image the model sees, before rescale and normalisation. */
export function resizeForModel(img: DecodedRgb, cfg: Pick<PreprocessConfig, 'imageSize' | 'resize'>): Uint8Array {
  const s = cfg.imageSize;
  const rule = cfg.resize ?? { mode: 'square' };
  if (rule.mode === 'square') return resizeBicubicPil(img.data, img.width, img.height, s, s);
  const { width, height } = shortestEdgeSize(img.width, img.height, rule.shortestEdge);
  return centerCrop(resizeBicubicPil(img.data, img.width, img.height, width, height), width, height, s, s);
}

/** HF get_resize_output_image_size(default_to_square=False): short side = edge, long side truncated. */
export function shortestEdgeSize(width: number, height: number, edge: number): { width: number; height: number } {
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc((edge * long) / short);
  return width <= height ? { width: edge, height: newLong } : { width: newLong, height: edge };
}

/**
 * HF image_transforms.center_crop on HWC uint8: top = (h − ch) // 2 (floor), and where the image
 * is smaller than the crop it is first zero-padded, ceil(diff / 2) before.
 */
export function centerCrop(src: Uint8Array, w: number, h: number, cw: number, ch: number): Uint8Array {
  const out = new Uint8Array(cw * ch * 3);
  const padTop = h < ch ? Math.ceil((ch - h) / 2) : 0;
  const padLeft = w < cw ? Math.ceil((cw - w) / 2) : 0;
  const top = Math.max(0, Math.floor((h - ch) / 2) + padTop);
  const left = Math.max(0, Math.floor((w - cw) / 2) + padLeft);
  for (let y = 0; y < ch; y++) {
    const sy = y + top - padTop;
    if (sy < 0 || sy >= h) continue;
    for (let x = 0; x < cw; x++) {
      const sx = x + left - padLeft;
      if (sx < 0 || sx >= w) continue;
      const o = (y * cw + x) * 3;
      const p = (sy * w + sx) * 3;
      out[o] = src[p];
      out[o + 1] = src[p + 1];
      out[o + 2] = src[p + 2];
    }
  }
  return out;
}

/**
 * Decodes with EXIF orientation applied and converts to 8-bit sRGB with 3 channels (alpha is
 * dropped, as PIL's convert('RGB') drops it).
 */
export async function decodeRgb(bytes: Uint8Array, limitInputPixels = DEFAULT_LIMIT_PIXELS, index = 0): Promise<DecodedRgb> {
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await sharp(bytes, { limitInputPixels, failOn: 'error' })
      .rotate()
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new CapfiltError('IMAGE_DECODE_FAILED', `image ${index}: ${(e as Error).message}`, { index }, { cause: e });
  }
  const { width, height, channels } = decoded.info;
  if (channels !== 3) {
    throw new CapfiltError('IMAGE_DECODE_FAILED', `image ${index}: decoded to ${channels} channels, expected 3`, { index });
  }
  return { data: new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.length), width, height };
}

/** Decode + PIL bicubic resize to S×S (BLIP's rule). Returns HWC uint8 [S, S, 3]. */
export async function resizeToRgb(bytes: Uint8Array, size: number, limitInputPixels = DEFAULT_LIMIT_PIXELS, index = 0): Promise<Uint8Array> {
  const img = await decodeRgb(bytes, limitInputPixels, index);
  return resizeBicubicPil(img.data, img.width, img.height, size, size);
}

/** ((u8 · rescale) as float32 − mean) / std in float32, HWC → CHW, as HF's rescale + normalize. */
export function normalizeInto(rgb: Uint8Array, size: number, cfg: PreprocessConfig, out: Float32Array): void {
  const n = size * size;
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(cfg.mean[c]);
    const std = Math.fround(cfg.std[c]);
    const base = c * n;
    for (let p = 0; p < n; p++) {
      const v = Math.fround(rgb[p * 3 + c] * cfg.rescaleFactor);
      out[base + p] = Math.fround(v - mean) / std;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// PIL's Resample.c (ImagingResample with the BICUBIC filter, a = -0.5), 8 bits per channel.

const PRECISION_BITS = 32 - 8 - 2;

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs { ksize: number; bounds: Int32Array; kk: Int32Array }

function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION_BITS)) : Math.trunc(0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  if (v >= 1 << (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS;
}

/** RGB HWC uint8 resize, bit-exact with PIL `Image.resize(size, BICUBIC)` (reducing_gap=None). */
export function resizeBicubicPil(src: Uint8Array, inW: number, inH: number, outW: number, outH: number): Uint8Array {
  const needH = outW !== inW;
  const needV = outH !== inH;
  const vert = precomputeCoeffs(inH, outH);
  let img = src;
  if (needH) {
    // PIL only resamples the rows the vertical pass will read.
    const first = vert.bounds[0];
    const last = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
    for (let i = 0; i < outH; i++) vert.bounds[i * 2] -= first;
    const horiz = precomputeCoeffs(inW, outW);
    const rows = last - first;
    const tmp = new Uint8Array(rows * outW * 3);
    const { ksize, bounds, kk } = horiz;
    const half = 1 << (PRECISION_BITS - 1);
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + first) * inW * 3;
      const rowOut = y * outW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = bounds[xx * 2];
        const xmax = bounds[xx * 2 + 1];
        const k0 = xx * ksize;
        let s0 = half, s1 = half, s2 = half;
        for (let x = 0; x < xmax; x++) {
          const k = kk[k0 + x];
          const p = rowIn + (x + xmin) * 3;
          s0 += src[p] * k;
          s1 += src[p + 1] * k;
          s2 += src[p + 2] * k;
        }
        const o = rowOut + xx * 3;
        tmp[o] = clip8(s0);
        tmp[o + 1] = clip8(s1);
        tmp[o + 2] = clip8(s2);
      }
    }
    img = tmp;
  }
  if (!needV) return needH ? img : img.slice();
  const out = new Uint8Array(outH * outW * 3);
  const { ksize, bounds, kk } = vert;
  const half = 1 << (PRECISION_BITS - 1);
  const stride = outW * 3;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2];
    const ymax = bounds[yy * 2 + 1];
    const k0 = yy * ksize;
    for (let i = 0; i < stride; i++) {
      let s = half;
      for (let y = 0; y < ymax; y++) s += img[(y + ymin) * stride + i] * kk[k0 + y];
      out[yy * stride + i] = clip8(s);
    }
  }
  return out;
}
