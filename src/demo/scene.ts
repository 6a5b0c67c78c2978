import { Rng } from './prng.ts';
import { COLOUR_NAMES, SHAPE_KINDS, RELATIONS, type Colour, type Relation, type ShapeKind } from './vocab.ts';

/** One shape; coordinates and size are fractions of the (square) canvas side. */
export interface Shape {
  kind: ShapeKind;
  colour: Colour;
  cx: number;
  cy: number;
  /** Side of the shape's bounding box. */
  size: number;
  /** Rotation in degrees, small, so that shapes are not pixel-identical across scenes. */
  rotation: number;
}

/**
 * A scene: one to three shapes on a plain background. Two-shape scenes carry the relation of
 * shapes[0] to shapes[1]; three-shape scenes are laid out left to right in shapes order.
 */
export interface Scene {
  background: Colour;
  shapes: Shape[];
  relation: Relation | null;
}

function pickShape(rng: Rng, background: Colour, size: number, cx: number, cy: number): Shape {
  const colour = rng.pick(COLOUR_NAMES.filter((c) => c !== background));
  return { kind: rng.pick(SHAPE_KINDS), colour, cx, cy, size, rotation: rng.range(-12, 12) };
}

/**
 * Places the two shapes so that the relation is unambiguous: separation along the relation's
 * axis is at least one shape size plus a gap, while the offset on the other axis stays under half
 * of that separation.
 */
function twoShapes(rng: Rng, background: Colour): Scene {
  const relation = rng.pick(RELATIONS);
  const size = rng.range(0.26, 0.33);
  const sep = rng.range(size + 0.06, 0.58);
  const cross = rng.range(-0.35, 0.35) * sep;
  const mainA = 0.5 - sep / 2;
  const mainB = 0.5 + sep / 2;
  const shift = rng.range(-1, 1) * Math.max(0, 0.5 - sep / 2 - size / 2 - 0.04);
  const crossShift = rng.range(-1, 1) * Math.max(0, 0.5 - Math.abs(cross) / 2 - size / 2 - 0.06);
  // (main axis, cross axis) positions: `near` is the top or left one.
  const near = [mainA + shift, 0.5 + crossShift - cross / 2] as const;
  const far = [mainB + shift, 0.5 + crossShift + cross / 2] as const;
  const firstIsNear = relation === 'above' || relation === 'left';
  const vertical = relation === 'above' || relation === 'below';
  const xy = (p: readonly [number, number]) => (vertical ? { cx: p[1], cy: p[0] } : { cx: p[0], cy: p[1] });
  const a = xy(firstIsNear ? near : far);
  const b = xy(firstIsNear ? far : near);
  const sizeB = size * rng.range(0.85, 1.15);
  return {
    background,
    shapes: [pickShape(rng, background, size, a.cx, a.cy), pickShape(rng, background, sizeB, b.cx, b.cy)],
    relation,
  };
}

function threeShapes(rng: Rng, background: Colour): Scene {
  const size = rng.range(0.21, 0.25);
  const xs = [0.19, 0.5, 0.81].map((x) => x + rng.range(-0.02, 0.02));
  const shapes = xs.map((cx) => pickShape(rng, background, size * rng.range(0.9, 1.1), cx, rng.range(0.25, 0.75)));
  return { background, shapes, relation: null };
}

function oneShape(rng: Rng, background: Colour): Scene {
  const size = rng.range(0.36, 0.54);
  const margin = size / 2 + 0.05;
  return {
    background,
    shapes: [pickShape(rng, background, size, rng.range(margin, 1 - margin), rng.range(margin, 1 - margin))],
    relation: null,
  };
}

export function generateScene(rng: Rng): Scene {
  const background = rng.pick(COLOUR_NAMES);
  const count = rng.pick([1, 2, 2, 3]);
  if (count === 1) return oneShape(rng, background);
  if (count === 2) return twoShapes(rng, background);
  return threeShapes(rng, background);
}
