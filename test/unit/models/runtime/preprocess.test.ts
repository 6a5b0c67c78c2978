import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { centerCrop, decodeImages, normalizeInto, pixelValuesOf, preprocessImages, resizeToRgb, shortestEdgeSize } from '../../../../src/models/runtime/preprocess.ts';

const FIX = new URL('../../../fixtures/preprocess/', import.meta.url).pathname;
const read = (f: string) => new Uint8Array(readFileSync(join(FIX, f)));

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// Expected bytes come from PIL (tools/fixtures/make_preprocess_fixtures.py).
describe('resizeToRgb matches PIL convert("RGB").resize(BICUBIC) exactly', () => {
  it.each([
    ['noisy', 64, 'downscale 173×131'],
    ['noisy', 200, 'upscale 173×131'],
    ['small', 32, 'upscale 13×9'],
    ['rgba', 32, 'alpha dropped, not composited'],
    ['gray', 32, 'grayscale expanded to RGB'],
    ['exif6', 32, 'EXIF orientation 6 applied'],
  ])('%s → %i (%s)', async (name, size) => {
    const got = await resizeToRgb(read(`${name}.png`), size);
    expect(maxAbsDiff(got, read(`${name}.${size}.rgb`))).toBe(0);
  });
});

describe('parity t1 preprocess section', () => {
  const p = JSON.parse(readFileSync(join(FIX, 't1_preprocess.json'), 'utf8'));
  const cfg = { imageSize: p.image_size, mean: p.image_mean, std: p.image_std, rescaleFactor: p.rescale_factor };
  const images = (p.images as { file: string }[]).map((im) => read(im.file));

  it('resizes to the recorded uint8 values and pixel_values within 1e-6', async () => {
    const s = p.image_size as number;
    for (let i = 0; i < images.length; i++) {
      const rgb = await resizeToRgb(images[i], s);
      expect(maxAbsDiff(rgb, p.resized_uint8.data.slice(i * s * s * 3, (i + 1) * s * s * 3))).toBe(0);
    }
    const { pixelValues, errors } = await preprocessImages(images, cfg);
    expect(errors).toEqual([null, null]);
    expect(maxAbsDiff(pixelValues, p.pixel_values.data)).toBeLessThan(1e-6);
  });

  it('normalises the recorded uint8 values to pixel_values within 1e-6', () => {
    const s = p.image_size as number;
    const out = new Float32Array(images.length * 3 * s * s);
    for (let i = 0; i < images.length; i++) {
      const rgb = Uint8Array.from(p.resized_uint8.data.slice(i * s * s * 3, (i + 1) * s * s * 3));
      normalizeInto(rgb, s, cfg, out.subarray(i * 3 * s * s, (i + 1) * 3 * s * s));
    }
    expect(maxAbsDiff(out, p.pixel_values.data)).toBeLessThan(1e-6);
  });
});

describe('preprocessImages on a mixed batch', () => {
  const cfg = { imageSize: 16, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], rescaleFactor: 1 / 255 };

  it('fails only the bad images and lays out [N,3,S,S]', async () => {
    const red = await sharp({ create: { width: 20, height: 10, channels: 3, background: { r: 255, g: 0, b: 0 } } }).jpeg().toBuffer();
    const blue = await sharp({ create: { width: 7, height: 30, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 0.5 } } }).png().toBuffer();
    const truncated = red.subarray(0, 40);
    const garbage = new TextEncoder().encode('<html>not an image</html>');
    const { pixelValues, errors } = await preprocessImages([red, garbage, blue, truncated], cfg);
    expect(pixelValues.length).toBe(4 * 3 * 16 * 16);
    expect(errors[0]).toBeNull();
    expect(errors[2]).toBeNull();
    expect(errors[1]?.code).toBe('IMAGE_DECODE_FAILED');
    expect(errors[1]?.message).toContain('image 1');
    expect(errors[3]?.code).toBe('IMAGE_DECODE_FAILED');
    const plane = 16 * 16;
    const at = (img: number, c: number) => pixelValues[img * 3 * plane + c * plane + 5 * 16 + 5];
    // red: R = (1 - .5)/.5 = 1, B = -1 (JPEG may shift a level or two)
    expect(at(0, 0)).toBeCloseTo(1, 1);
    expect(at(0, 2)).toBeCloseTo(-1, 1);
    // blue with alpha 0.5: alpha dropped, colour kept at full strength
    expect(at(2, 2)).toBeCloseTo(1, 5);
    expect(at(2, 0)).toBeCloseTo(-1, 5);
    // failed rows stay zero
    expect(pixelValues.subarray(3 * plane, 2 * 3 * plane).every((v) => v === 0)).toBe(true);
  });

  it('refuses images above limitInputPixels without decoding them', async () => {
    const big = await sharp({ create: { width: 200, height: 200, channels: 3, background: '#888' } }).png().toBuffer();
    const { errors } = await preprocessImages([big], cfg, { limitInputPixels: 1000 });
    expect(errors[0]?.code).toBe('IMAGE_DECODE_FAILED');
    expect(errors[0]?.message).toMatch(/pixel limit/);
  });

  it('reduces 16-bit PNGs to 8-bit RGB', async () => {
    const deep = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: 0 } } }).toColourspace('rgb16').png().toBuffer();
    const rgb = await resizeToRgb(deep, 4);
    expect(Array.from(rgb.subarray(0, 3))).toEqual([255, 0, 0]);
  });

  it('gives the same pixels whatever the concurrency', async () => {
    const imgs = ['noisy.png', 'small.png', 'rgba.png', 'gray.png', 'exif6.png'].map(read);
    const a = await preprocessImages(imgs, cfg, { concurrency: 1 });
    const b = await preprocessImages(imgs, cfg, { concurrency: 5 });
    expect(maxAbsDiff(a.pixelValues, b.pixelValues)).toBe(0);
  });
});

describe('CLIPImageProcessor resize rule (shortest edge, centre crop)', () => {
  it('sizes the short side to the edge and truncates the long side as HF does', () => {
    expect(shortestEdgeSize(37, 50, 32)).toEqual({ width: 32, height: 43 });
    expect(shortestEdgeSize(50, 37, 32)).toEqual({ width: 43, height: 32 });
    expect(shortestEdgeSize(640, 480, 224)).toEqual({ width: 298, height: 224 });
    expect(shortestEdgeSize(224, 224, 224)).toEqual({ width: 224, height: 224 });
  });

  it('crops at ((h − ch) // 2, (w − cw) // 2)', () => {
    const w = 5;
    const h = 4;
    const src = Uint8Array.from({ length: w * h * 3 }, (_, i) => Math.floor(i / 3));
    const out = centerCrop(src, w, h, 2, 2);
    // top = (4 − 2) // 2 = 1, left = (5 − 2) // 2 = 1: pixels (1,1) (1,2) (2,1) (2,2).
    expect(Array.from(out).filter((_, i) => i % 3 === 0)).toEqual([6, 7, 11, 12]);
  });

  it('zero-pads an image smaller than the crop, ceil(diff / 2) before', () => {
    const src = Uint8Array.from({ length: 2 * 1 * 3 }, () => 200);
    const out = centerCrop(src, 2, 1, 3, 4);
    // pad top = ceil(3 / 2) = 2, pad left = ceil(1 / 2) = 1: the image lands at rows 2, columns 1-2.
    const firstChannel = Array.from(out).filter((_, i) => i % 3 === 0);
    expect(firstChannel).toEqual([0, 0, 0, 0, 0, 0, 0, 200, 200, 0, 0, 0]);
  });

  it('decodes once and feeds both resize rules from the same pixels', async () => {
    const bytes = read('noisy.png');
    const [decoded] = await decodeImages([bytes]);
    expect('code' in decoded).toBe(false);
    const square = pixelValuesOf([decoded], { imageSize: 8, mean: [0, 0, 0], std: [1, 1, 1], rescaleFactor: 1 / 255 });
    const viaBytes = await preprocessImages([bytes], { imageSize: 8, mean: [0, 0, 0], std: [1, 1, 1], rescaleFactor: 1 / 255 });
    expect(square.pixelValues).toEqual(viaBytes.pixelValues);
    const clip = pixelValuesOf([decoded], { imageSize: 8, resize: { mode: 'shortest-edge', shortestEdge: 8 }, mean: [0, 0, 0], std: [1, 1, 1], rescaleFactor: 1 / 255 });
    expect(clip.pixelValues).not.toEqual(square.pixelValues);
    const bad = await decodeImages([new Uint8Array([1, 2, 3])]);
    expect(bad[0]).toMatchObject({ code: 'IMAGE_DECODE_FAILED' });
  });
});
