import { closeSync, openSync, writeSync } from 'node:fs';

/**
 * Random-weight checkpoints at released model sizes, for benchmarks and tests that need real
 * shapes but not real values: a safetensors file streamed tensor by tensor (a ViT-L/14 never
 * sits in memory whole), LayerNorm scales near 1 and other weights small, so activations stay
 * finite through deep stacks.
 */

/** xorshift32 uniform in [-a, a] around `offset`. */
function fill(out: Float32Array, state: { s: number }, a: number, offset = 0): void {
  let s = state.s;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = offset + ((s >>> 0) / 4294967296 * 2 - 1) * a;
  }
  state.s = s;
}

/**
 * `n` values spread over ±scale/2 from a fixed-seed LCG: no two pages alike, the same every
 * run (in-memory weights and inputs for benchmarks and graph tests).
 */
export function spread(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = scale * (x / 2 ** 32 - 0.5);
  }
  return out;
}

const NORM_SCALE = /(LayerNorm|layer_norm\d?|post_layernorm|pre_layrnorm|final_layer_norm)\.weight$/;

/** Writes `shapes` (HF names → dims) as float32 safetensors; `special` overrides single tensors. */
export function writeRandomSafetensors(file: string, shapes: Map<string, number[]>, seed: number, special: Record<string, (t: Float32Array) => void> = {}): void {
  const names = [...shapes.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of names) {
    const bytes = shape.reduce((x, y) => x * y, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const fd = openSync(file, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len);
  writeSync(fd, Buffer.from(json));
  const state = { s: seed };
  for (const [name, shape] of names) {
    const t = new Float32Array(shape.reduce((x, y) => x * y, 1));
    const isNormScale = NORM_SCALE.test(name);
    fill(t, state, isNormScale ? 0.05 : 0.035, isNormScale ? 1 : 0);
    special[name]?.(t);
    writeSync(fd, new Uint8Array(t.buffer));
  }
  closeSync(fd);
}
