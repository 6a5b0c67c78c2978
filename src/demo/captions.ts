import { Rng } from './prng.ts';
import type { Scene, Shape } from './scene.ts';
import {
  BACKGROUND_TEMPLATES, COLOUR_NAMES, INVERSE_RELATION, RELATION_PHRASES, SHAPE_KINDS,
  type Colour, type Relation, type ShapeKind,
} from './vocab.ts';

/**
 * The caption grammar. A caption names every shape (colour + kind), the relation of the two shapes
 * of a two-shape scene, and the background colour:
 *   "a red circle on a yellow background"
 *   "a red circle above a blue square against a green background"
 *   "a red circle, a blue square and a white star with a black background"
 * Paraphrases keep the meaning: the inverse relation with the shapes swapped, another background
 * wording, and (three shapes) any listing order. Meaning is compared through `captionSemantics`.
 */

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

function objectPhrase(s: Pick<Shape, 'colour' | 'kind'>): string {
  return `${article(s.colour)} ${s.colour} ${s.kind}`;
}

function backgroundPhrase(colour: Colour, template: number): string {
  return (BACKGROUND_TEMPLATES[template] ?? BACKGROUND_TEMPLATES[0]).replace('{c}', `${article(colour)} ${colour}`);
}

function listPhrase(shapes: Pick<Shape, 'colour' | 'kind'>[]): string {
  const parts = shapes.map(objectPhrase);
  if (parts.length <= 2) return parts.join(' and ');
  return `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`;
}

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((p) => [x, ...p]));
}

/** Subject phrases (everything before the background) that describe the scene's shapes. */
function subjectPhrases(scene: Scene, allOrders: boolean): string[] {
  const [a, b] = scene.shapes;
  if (scene.shapes.length === 2 && a && b && scene.relation) {
    const rel = scene.relation;
    return [
      `${objectPhrase(a)} ${RELATION_PHRASES[rel]} ${objectPhrase(b)}`,
      `${objectPhrase(b)} ${RELATION_PHRASES[INVERSE_RELATION[rel]]} ${objectPhrase(a)}`,
    ];
  }
  if (scene.shapes.length === 3 && allOrders) return permutations(scene.shapes).map(listPhrase);
  return [listPhrase(scene.shapes)];
}

/** The ground-truth caption: shapes in scene order, first background wording. */
export function groundTruthCaption(scene: Scene): string {
  return `${subjectPhrases(scene, false)[0]} ${backgroundPhrase(scene.background, 0)}`;
}

/**
 * Captions the captioner is trained to produce: both relation orders, every background wording;
 * three shapes are always listed left to right (the scene's order), which keeps decoding simple.
 */
export function captionVariants(scene: Scene): string[] {
  return subjectPhrases(scene, false).flatMap((s) => BACKGROUND_TEMPLATES.map((_, t) => `${s} ${backgroundPhrase(scene.background, t)}`));
}

/** Every wording that means this scene (captionVariants plus all listing orders). */
export function paraphrases(scene: Scene): string[] {
  return subjectPhrases(scene, true).flatMap((s) => BACKGROUND_TEMPLATES.map((_, t) => `${s} ${backgroundPhrase(scene.background, t)}`));
}

export interface CaptionSemantics {
  background: Colour;
  /** "colour kind" per shape, sorted. */
  objects: string[];
  /** Two-shape scenes: "vertical:<top>|<bottom>" or "horizontal:<left>|<right>". */
  relation: string | null;
}

function relationKey(rel: Relation, a: string, b: string): string {
  switch (rel) {
    case 'above': return `vertical:${a}|${b}`;
    case 'below': return `vertical:${b}|${a}`;
    case 'left': return `horizontal:${a}|${b}`;
    case 'right': return `horizontal:${b}|${a}`;
  }
}

export function sceneSemantics(scene: Scene): CaptionSemantics {
  const objs = scene.shapes.map((s) => `${s.colour} ${s.kind}`);
  const [a, b] = objs;
  return {
    background: scene.background,
    objects: objs.slice().sort(),
    relation: scene.shapes.length === 2 && scene.relation && a && b ? relationKey(scene.relation, a, b) : null,
  };
}

export function semanticsKey(s: CaptionSemantics): string {
  return `${s.background};${s.objects.join(',')};${s.relation ?? ''}`;
}

const C = `(${COLOUR_NAMES.join('|')})`;
const K = `(${SHAPE_KINDS.join('|')})`;
const OBJ = `an? ${C} ${K}`;
const BG = new RegExp(`^(.*) (?:on|against|with) an? ${C} background$`);
const ONE = new RegExp(`^${OBJ}$`);
const TWO = new RegExp(`^${OBJ} (above|below|to the left of|to the right of) ${OBJ}$`);
const THREE = new RegExp(`^${OBJ} ${OBJ} and ${OBJ}$`);
const REL_WORDS: Record<string, Relation> = { above: 'above', below: 'below', 'to the left of': 'left', 'to the right of': 'right' };

/** Lowercase, drop punctuation and the captioner prompt, collapse spaces. */
export function normaliseCaption(text: string): string {
  return text
    .toLowerCase()
    .replace(/[.,!?;:]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^a picture of /, '');
}

/** Meaning of a caption written in the grammar, or null when it is not a grammatical caption. */
export function captionSemantics(text: string): CaptionSemantics | null {
  const bg = BG.exec(normaliseCaption(text));
  if (!bg) return null;
  const subject = bg[1] as string;
  const background = bg[2] as Colour;
  let m = ONE.exec(subject);
  if (m) return { background, objects: [`${m[1]} ${m[2]}`], relation: null };
  m = THREE.exec(subject);
  if (m) return { background, objects: [`${m[1]} ${m[2]}`, `${m[3]} ${m[4]}`, `${m[5]} ${m[6]}`].sort(), relation: null };
  m = TWO.exec(subject);
  if (m) {
    const a = `${m[1]} ${m[2]}`;
    const b = `${m[4]} ${m[5]}`;
    return { background, objects: [a, b].sort(), relation: relationKey(REL_WORDS[m[3] as string] as Relation, a, b) };
  }
  return null;
}

/** True when the text is a grammatical caption whose every attribute matches the scene. */
export function captionMatchesScene(text: string, scene: Scene): boolean {
  const sem = captionSemantics(text);
  return sem !== null && semanticsKey(sem) === semanticsKey(sceneSemantics(scene));
}

type Swap = 'colour' | 'kind' | 'background' | 'relation';

function swapOnce(scene: Scene, rng: Rng): Scene {
  const swaps: Swap[] = ['colour', 'kind', 'background'];
  if (scene.relation) swaps.push('relation', 'relation');
  const what = rng.pick(swaps);
  const shapes = scene.shapes.map((s) => ({ ...s }));
  const i = rng.int(0, shapes.length - 1);
  const target = shapes[i] as Shape;
  switch (what) {
    case 'colour':
      target.colour = rng.pick(COLOUR_NAMES.filter((c) => c !== target.colour && c !== scene.background));
      return { ...scene, shapes };
    case 'kind':
      target.kind = rng.pick(SHAPE_KINDS.filter((k) => k !== target.kind)) as ShapeKind;
      return { ...scene, shapes };
    case 'background': {
      const used = new Set(scene.shapes.map((s) => s.colour));
      return { ...scene, shapes, background: rng.pick(COLOUR_NAMES.filter((c) => c !== scene.background && !used.has(c))) };
    }
    case 'relation':
      return { ...scene, shapes, relation: INVERSE_RELATION[scene.relation as Relation] };
  }
}

/**
 * A hard negative: the scene with exactly one attribute changed (a colour, a kind, the
 * background, or the relation reversed), worded as a random paraphrase. The result never means
 * the original scene.
 */
export function swappedCaption(scene: Scene, rng: Rng): string {
  const original = semanticsKey(sceneSemantics(scene));
  for (let attempt = 0; attempt < 20; attempt++) {
    const changed = swapOnce(scene, rng);
    if (semanticsKey(sceneSemantics(changed)) !== original) return rng.pick(paraphrases(changed));
  }
  const shapes = scene.shapes.map((s) => ({ ...s }));
  const first = shapes[0] as Shape;
  first.kind = SHAPE_KINDS[(SHAPE_KINDS.indexOf(first.kind) + 1) % SHAPE_KINDS.length] as ShapeKind;
  return rng.pick(paraphrases({ ...scene, shapes }));
}
