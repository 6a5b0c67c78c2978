import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';
import sharp from 'sharp';

/** Shared by the image, download-stage and corpus tests: the committed fixtures plus generated ones. */
export const FIXTURE_DIR = new URL('../fixtures/images/', import.meta.url);

export function fixture(name: string): Buffer {
  return readFileSync(new URL(name, FIXTURE_DIR));
}

function chunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body) >>> 0);
  return Buffer.concat([len, body, crc]);
}

/** A valid-looking PNG whose IHDR declares `w`×`h` pixels: a decompression bomb's header. */
export function hugePng(w = 100_000, h = 100_000): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export const HTML_PAGE = Buffer.from('<!DOCTYPE html>\n<html><head><title>404</title></head><body>Image not found</body></html>');
export const SVG = Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><image href="http://169.254.169.254/x.png"/></svg>');

/** 64×32 red/blue JPEG tagged with EXIF orientation 6 (display rotated 90° clockwise: 32×64). */
export async function exifRotatedJpeg(): Promise<Buffer> {
  const left = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#ff0000' } }).png().toBuffer();
  return sharp({ create: { width: 64, height: 32, channels: 3, background: '#0000ff' } })
    .composite([{ input: left, left: 0, top: 0 }])
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
}

export async function jpegOfSize(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: '#808080' } }).jpeg().toBuffer();
}
