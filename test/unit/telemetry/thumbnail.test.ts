import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { makeThumbnail, thumbnailDataUrl } from '../../../src/telemetry/thumbnail.ts';
import { THUMBNAIL_MAX_BYTES } from '../../../src/telemetry/stats-schema.ts';

describe('thumbnails', () => {
  it('shrinks a large noisy photo-like image under the byte cap and keeps its aspect', async () => {
    const w = 1200, h = 800;
    const raw = Buffer.alloc(w * h * 3);
    let s = 12345;
    for (let i = 0; i < raw.length; i++) { s = (s * 1103515245 + 12345) >>> 0; raw[i] = (s >>> 16) & 255; }
    const png = await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
    const jpg = await makeThumbnail(png);
    expect(jpg).not.toBeNull();
    expect(jpg!.length).toBeLessThanOrEqual(THUMBNAIL_MAX_BYTES);
    const meta = await sharp(jpg!).metadata();
    expect(meta.format).toBe('jpeg');
    expect(meta.width! / meta.height!).toBeCloseTo(1.5, 1);
  });

  it('returns null when even the smallest step exceeds the cap, and for bytes that are not an image', async () => {
    const png = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#3366cc' } }).png().toBuffer();
    expect(await makeThumbnail(png, 50)).toBeNull();
    expect(await thumbnailDataUrl(new Uint8Array([1, 2, 3, 4]))).toBeNull();
    expect(await thumbnailDataUrl(png)).toMatch(/^data:image\/jpeg;base64,/);
  });
});
