import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { renderScene, sceneToSvg } from '../../../src/demo/render.ts';
import type { Scene } from '../../../src/demo/scene.ts';
import { COLOURS } from '../../../src/demo/vocab.ts';

const hex = (h: string) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));

const scene: Scene = {
  background: 'yellow',
  relation: 'left',
  shapes: [
    { kind: 'circle', colour: 'red', cx: 0.25, cy: 0.5, size: 0.3, rotation: 0 },
    { kind: 'square', colour: 'blue', cx: 0.75, cy: 0.5, size: 0.3, rotation: 5 },
  ],
};

describe('renderScene', () => {
  it('renders the background and each shape in its colour at its position', async () => {
    const png = await renderScene(scene, { size: 160, format: 'png' });
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([160, 160, 3]);
    const at = (x: number, y: number) => Array.from(data.subarray((y * 160 + x) * 3, (y * 160 + x) * 3 + 3));
    expect(at(2, 2)).toEqual(hex(COLOURS.yellow));
    expect(at(40, 80)).toEqual(hex(COLOURS.red));
    expect(at(120, 80)).toEqual(hex(COLOURS.blue));
  });

  it('encodes JPEG at the requested size', async () => {
    const jpg = await renderScene(scene, { size: 96, format: 'jpeg', quality: 85 });
    expect(jpg[0]).toBe(0xff);
    expect(jpg[1]).toBe(0xd8);
    const meta = await sharp(jpg).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([96, 96, 'jpeg']);
  });

  it('draws every shape kind as SVG', () => {
    for (const kind of ['circle', 'square', 'triangle', 'star', 'diamond'] as const) {
      const svg = sceneToSvg({ ...scene, shapes: [{ ...scene.shapes[0]!, kind }] }, 64);
      expect(svg).toMatch(/<(circle|rect|polygon) [^>]*fill="#d62728"/);
    }
  });
});
