import sharp from 'sharp';
import type { Scene, Shape } from './scene.ts';
import { COLOURS } from './vocab.ts';

export type ImageFormat = 'png' | 'jpeg';

export interface RenderOptions {
  /** Side of the square image in pixels. */
  size: number;
  format: ImageFormat;
  /** JPEG quality (ignored for PNG). */
  quality?: number;
}

function starPoints(cx: number, cy: number, r: number): string {
  const pts: string[] = [];
  for (let i = 0; i < 10; i++) {
    const radius = i % 2 === 0 ? r : r * 0.45;
    const a = -Math.PI / 2 + (i * Math.PI) / 5;
    pts.push(`${(cx + radius * Math.cos(a)).toFixed(2)},${(cy + radius * Math.sin(a)).toFixed(2)}`);
  }
  return pts.join(' ');
}

function shapeSvg(shape: Shape, px: number): string {
  const cx = shape.cx * px;
  const cy = shape.cy * px;
  const r = (shape.size * px) / 2;
  const fill = COLOURS[shape.colour];
  const transform = `transform="rotate(${shape.rotation.toFixed(2)} ${cx.toFixed(2)} ${cy.toFixed(2)})"`;
  switch (shape.kind) {
    case 'circle':
      return `<circle cx="${cx.toFixed(2)}" cy="${cy.toFixed(2)}" r="${r.toFixed(2)}" fill="${fill}"/>`;
    case 'square': {
      const s = r * 1.7;
      return `<rect x="${(cx - s / 2).toFixed(2)}" y="${(cy - s / 2).toFixed(2)}" width="${s.toFixed(2)}" height="${s.toFixed(2)}" fill="${fill}" ${transform}/>`;
    }
    case 'triangle': {
      const h = r * 0.9;
      const pts = `${cx.toFixed(2)},${(cy - r).toFixed(2)} ${(cx + r).toFixed(2)},${(cy + h).toFixed(2)} ${(cx - r).toFixed(2)},${(cy + h).toFixed(2)}`;
      return `<polygon points="${pts}" fill="${fill}" ${transform}/>`;
    }
    case 'star':
      return `<polygon points="${starPoints(cx, cy, r * 1.1)}" fill="${fill}" ${transform}/>`;
    case 'diamond': {
      const w = r * 0.75;
      const pts = `${cx.toFixed(2)},${(cy - r).toFixed(2)} ${(cx + w).toFixed(2)},${cy.toFixed(2)} ${cx.toFixed(2)},${(cy + r).toFixed(2)} ${(cx - w).toFixed(2)},${cy.toFixed(2)}`;
      return `<polygon points="${pts}" fill="${fill}"/>`;
    }
  }
}

export function sceneToSvg(scene: Scene, size: number): string {
  const body = scene.shapes.map((s) => shapeSvg(s, size)).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}">` +
    `<rect width="${size}" height="${size}" fill="${COLOURS[scene.background]}"/>${body}</svg>`;
}

/** Encoded image bytes of the scene (RGB, no alpha). */
export async function renderScene(scene: Scene, options: RenderOptions): Promise<Uint8Array> {
  const img = sharp(Buffer.from(sceneToSvg(scene, options.size))).removeAlpha();
  const out = options.format === 'png'
    ? await img.png().toBuffer()
    : await img.jpeg({ quality: options.quality ?? 90 }).toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}
