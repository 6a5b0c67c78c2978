import sharp from 'sharp';
import { THUMBNAIL_MAX_BYTES } from './stats-schema.ts';

/**
 * Small inline JPEG thumbnails for the dashboard's sample gallery. They are stored in Redis next
 * to the sample (the staging store is deleted when a shard is written, so a reference would
 * dangle), hence the hard byte cap: try a few size/quality steps and give up rather than exceed.
 */
const STEPS: Array<{ size: number; quality: number }> = [
  { size: 192, quality: 70 },
  { size: 160, quality: 60 },
  { size: 128, quality: 55 },
  { size: 96, quality: 50 },
];

export async function makeThumbnail(bytes: Uint8Array, maxBytes = THUMBNAIL_MAX_BYTES): Promise<Buffer | null> {
  for (const { size, quality } of STEPS) {
    const out = await sharp(bytes, { limitInputPixels: 64_000_000 })
      .rotate()
      .resize(size, size, { fit: 'inside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality, mozjpeg: true })
      .toBuffer();
    if (out.length <= maxBytes) return out;
  }
  return null;
}

export async function thumbnailDataUrl(bytes: Uint8Array, maxBytes = THUMBNAIL_MAX_BYTES): Promise<string | null> {
  try {
    const jpg = await makeThumbnail(bytes, maxBytes);
    return jpg ? `data:image/jpeg;base64,${jpg.toString('base64')}` : null;
  } catch {
    // A sample without a thumbnail is still a useful sample; an undecodable image is already
    // accounted for by the row's own status, so nothing is lost by skipping it here.
    return null;
  }
}
