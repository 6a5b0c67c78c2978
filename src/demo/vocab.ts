/**
 * The demo domain: kept small on purpose so that a tiny BLIP learns it on two CPU cores. Changing
 * a word here changes what the bundled model understands; retrain (tools/demo-model) after edits.
 */

export const COLOURS = {
  red: '#d62728',
  green: '#2ca02c',
  blue: '#1f5fd6',
  yellow: '#f5d90a',
  purple: '#8e44ad',
  orange: '#ff8c1a',
  white: '#ffffff',
  black: '#111111',
} as const;

export type Colour = keyof typeof COLOURS;
export const COLOUR_NAMES = Object.keys(COLOURS) as Colour[];

export const SHAPE_KINDS = ['circle', 'square', 'triangle', 'star', 'diamond'] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

/** Spatial relation of the first shape to the second (two-shape scenes only). */
export const RELATIONS = ['above', 'below', 'left', 'right'] as const;
export type Relation = (typeof RELATIONS)[number];

export const RELATION_PHRASES: Record<Relation, string> = {
  above: 'above',
  below: 'below',
  left: 'to the left of',
  right: 'to the right of',
};

export const INVERSE_RELATION: Record<Relation, Relation> = {
  above: 'below',
  below: 'above',
  left: 'right',
  right: 'left',
};

/** Ways of naming the background ({c} = article + colour); all mean the same thing. */
export const BACKGROUND_TEMPLATES = ['on {c} background', 'against {c} background', 'with {c} background'] as const;
