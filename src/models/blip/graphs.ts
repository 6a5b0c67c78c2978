import type { BlipArchitecture, BlipConfig } from './config.ts';
import type { BuiltGraph, GraphBuilder } from '../runtime/graph/builder.ts';
import { graphFile } from '../runtime/manifest.ts';
import { buildCrossKVGraph, buildDecoderGraph, buildFilterTextGraph } from './graph/text.ts';
import { buildVisionGraph } from './graph/vision.ts';
import type { LayerOptions, WeightGetter } from '../runtime/graph/layers.ts';

/**
 * The declarative table of graphs per architecture: graph name → builder. A converted folder
 * holds `<name>.onnx` + `<name>.onnx.data` for each entry.
 */

type Builder = (cfg: BlipConfig, w: WeightGetter, opts: LayerOptions) => GraphBuilder;

export const GRAPH_TABLE: Record<BlipArchitecture, Record<string, Builder>> = {
  BlipForConditionalGeneration: {
    vision: (cfg, w, opts) => buildVisionGraph(cfg, w, { ...opts, projection: false }),
    cross_kv: buildCrossKVGraph,
    decoder: buildDecoderGraph,
  },
  BlipForImageTextRetrieval: {
    vision: (cfg, w, opts) => buildVisionGraph(cfg, w, { ...opts, projection: true }),
    text_filter: buildFilterTextGraph,
  },
};

export function graphNames(arch: BlipArchitecture): string[] {
  return Object.keys(GRAPH_TABLE[arch]);
}

/**
 * Layer choices for a precision: fused attention where it measured faster (bench/models.ts).
 * int8: the vision towers' unmasked self-attention is MultiHeadAttention (which takes
 * precedence there), the filter's masked text self-attention QAttention.
 */
export function layerOptions(precision: 'fp32' | 'fp16' | 'int8'): LayerOptions {
  const int8 = precision === 'int8';
  return { int8, fusedAttention: !int8, multiHeadAttention: int8, quantizedAttention: int8 };
}

/** Builds the graphs one at a time, so only one graph's weights are held in memory at once. */
export function* buildGraphs(cfg: BlipConfig, w: WeightGetter, opts: LayerOptions = layerOptions('fp32')): Generator<[string, BuiltGraph]> {
  for (const [name, build] of Object.entries(GRAPH_TABLE[cfg.architecture])) {
    yield [name, build(cfg, w, opts).build(graphFile(name).data)];
  }
}
