import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { processImage, sha256Hex, type ImageResult } from '../../../src/io/image.ts';
import { HTML_PAGE, SVG, exifRotatedJpeg, fixture, hugePng, jpegOfSize } from '../../helpers/image-fixtures.ts';

function ok(r: ImageResult) {
  if (!r.ok) throw new Error(`expected success, got ${r.code}: ${r.detail}`);
  return r;
}

describe('processImage: accepted inputs', () => {
  it.each([
    ['hopper.jpg', 'jpeg', 128, 128],
    ['hopper.png', 'png', 128, 128],
    ['hopper.webp', 'webp', 128, 128],
    ['hopper.gif', 'gif', 128, 128],
    ['avif__hopper.avif', 'heif', 128, 128],
    ['hopper_gray.jpg', 'jpeg', 128, 128],
    ['pil_sample_cmyk.jpg', 'jpeg', 100, 100],
    ['apng__mode_16bit.png', 'png', 128, 64],
    ['tiff_16bit_RGB.tiff', 'tiff', 100, 40],
    ['transparent.png', 'png', 200, 150],
    ['dispose_bgnd.gif', 'gif', 100, 100],
    ['orientation_rectangle.jpg', 'jpeg', 1, 2],
  ])('%s (%s) decodes to 8-bit sRGB JPEG', async (name, format, w, h) => {
    const r = ok(await processImage(fixture(name), { size: 64, resizeMode: 'no' }));
    expect(r).toMatchObject({ sourceFormat: format, originalWidth: w, originalHeight: h, width: w, height: h, format: 'jpg' });
    const m = await sharp(r.data).metadata();
    expect(m).toMatchObject({ format: 'jpeg', space: 'srgb', channels: 3, depth: 'uchar', width: w, height: h });
  });

  it('applies EXIF orientation before measuring and resizing', async () => {
    const r = ok(await processImage(await exifRotatedJpeg(), { size: 16, resizeMode: 'no' }));
    expect([r.originalWidth, r.originalHeight, r.width, r.height]).toEqual([32, 64, 32, 64]);
    // Orientation 6 turns the red left half into the top half.
    const { data } = await sharp(r.data).raw().toBuffer({ resolveWithObject: true });
    expect(data[0]).toBeGreaterThan(200);
    expect(data[2]).toBeLessThan(60);
  });

  it('flattens alpha on white and keeps only the first frame of an animation', async () => {
    const r = ok(await processImage(fixture('transparent.png'), { resizeMode: 'no', format: 'png' }));
    const m = await sharp(r.data).metadata();
    expect(m.hasAlpha).toBe(false);
    const anim = ok(await processImage(fixture('dispose_bgnd.gif'), { resizeMode: 'no', format: 'webp' }));
    expect((await sharp(anim.data).metadata()).pages ?? 1).toBe(1);
  });
});

describe('processImage: resize modes (img2dataset semantics)', () => {
  it.each([
    ['no', 200, 100],
    ['keep_ratio', 128, 64],
    ['keep_ratio_largest', 64, 32],
    ['center_crop', 64, 64],
    ['border', 64, 64],
  ] as const)('%s on 200×100 with size 64 → %i×%i', async (mode, w, h) => {
    const r = ok(await processImage(await jpegOfSize(200, 100), { size: 64, resizeMode: mode }));
    expect([r.width, r.height]).toEqual([w, h]);
  });

  it('pads border mode with white', async () => {
    const r = ok(await processImage(await jpegOfSize(200, 100), { size: 64, resizeMode: 'border', format: 'png' }));
    const { data } = await sharp(r.data).raw().toBuffer({ resolveWithObject: true });
    expect([data[0], data[1], data[2]]).toEqual([255, 255, 255]);
  });

  it('does not enlarge with resizeOnlyIfBigger', async () => {
    const r = ok(await processImage(await jpegOfSize(40, 20), { size: 64, resizeMode: 'keep_ratio', resizeOnlyIfBigger: true }));
    expect([r.width, r.height]).toEqual([40, 20]);
  });

  it.each(['jpg', 'webp', 'png'] as const)('encodes %s', async (format) => {
    const r = ok(await processImage(fixture('hopper.jpg'), { size: 32, format, quality: 80 }));
    expect((await sharp(r.data).metadata()).format).toBe(format === 'jpg' ? 'jpeg' : format);
  });
});

describe('processImage: refusals end with a coded reason', () => {
  it.each([
    ['zero bytes', 'IMAGE_EMPTY', () => Buffer.alloc(0)],
    ['HTML served as image/jpeg', 'IMAGE_NOT_AN_IMAGE', () => HTML_PAGE],
    ['SVG', 'IMAGE_FORMAT_REFUSED', () => SVG],
    ['an XML feed', 'IMAGE_NOT_AN_IMAGE', () => Buffer.from('<?xml version="1.0"?><rss><channel/></rss>')],
    ['huge declared dimensions', 'IMAGE_PIXEL_LIMIT', () => hugePng()],
    ['truncated JPEG', 'IMAGE_DECODE_FAILED', () => fixture('truncated_jpeg.jpg')],
    ['truncated PNG', 'IMAGE_DECODE_FAILED', () => fixture('truncated_image.png')],
    ['corrupt PNG header', 'IMAGE_DECODE_FAILED', () => fixture('broken.png')],
    ['corrupt PNG data', 'IMAGE_DECODE_FAILED', () => fixture('broken_data_stream.png')],
    ['corrupt GIF', 'IMAGE_DECODE_FAILED', () => fixture('decompression_bomb.gif')],
    ['fuzzer TIFF', 'IMAGE_DECODE_FAILED', () => fixture('crash-2020-10-test.tif')],
    ['BMP', 'IMAGE_FORMAT_UNSUPPORTED', () => fixture('hopper.bmp')],
    ['random bytes', 'IMAGE_FORMAT_UNSUPPORTED', () => Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])],
    ['bytes with a GIF magic and nothing else', 'IMAGE_DECODE_FAILED', () => Buffer.from('GIF89a no really')],
  ] as const)('%s → %s', async (_name, code, bytes) => {
    const r = await processImage(bytes(), {}, 'image/jpeg');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.code).toBe(code);
    expect(!r.ok && r.detail.length).toBeGreaterThan(3);
  });

  it('calls a text body not an image when the server says it is text', async () => {
    const r = await processImage(Buffer.from('Forbidden'), {}, 'text/plain; charset=utf-8');
    expect(!r.ok && r.code).toBe('IMAGE_NOT_AN_IMAGE');
  });

  it('checks minImageSize, maxImageArea and maxAspectRatio on the original size', async () => {
    const img = await jpegOfSize(300, 100);
    expect(await processImage(img, { minImageSize: 101 })).toMatchObject({ ok: false, code: 'IMAGE_TOO_SMALL', originalWidth: 300, originalHeight: 100 });
    expect(await processImage(img, { maxImageArea: 29_999 })).toMatchObject({ ok: false, code: 'IMAGE_TOO_LARGE' });
    expect(await processImage(img, { maxAspectRatio: 2.5 })).toMatchObject({ ok: false, code: 'IMAGE_ASPECT_RATIO' });
    expect((await processImage(img, { minImageSize: 100, maxImageArea: 30_000, maxAspectRatio: 3 })).ok).toBe(true);
  });

  it('applies limitInputPixels to real images too', async () => {
    expect(await processImage(fixture('hopper.jpg'), { limitInputPixels: 1000 })).toMatchObject({ ok: false, code: 'IMAGE_PIXEL_LIMIT' });
  });

  it('hashes the original bytes', () => {
    expect(sha256Hex(Buffer.from('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
