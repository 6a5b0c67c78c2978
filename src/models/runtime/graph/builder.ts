import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/**
 * A small ONNX graph builder over onnx-proto. Weights are kept as float32 arrays and written as
 * external data (one `<graph>.onnx.data` file, or one Buffer handed to ORT's `externalData`
 * option), so the protobuf stays small and no 2 GB protobuf limit applies.
 */

export type ElemType = 'float32' | 'int64' | 'int32' | 'bool' | 'float16' | 'int8' | 'uint8';

export const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  uint8: onnx.TensorProto.DataType.UINT8,
  int8: onnx.TensorProto.DataType.INT8,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
  float16: onnx.TensorProto.DataType.FLOAT16,
};

export type Dim = number | string;
export type AttrValue = number | number[] | string | { float: number } | { floats: number[] };

/** Float attributes must be marked (`{float: 1}`) where the value could be an integer. */
function attribute(name: string, value: AttrValue): onnxProto.onnx.IAttributeProto {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: A.INTS, ints: value };
  if (typeof value === 'object' && 'floats' in value) return { name, type: A.FLOATS, floats: value.floats };
  if (typeof value === 'object') return { name, type: A.FLOAT, f: value.float };
  if (Number.isInteger(value)) return { name, type: A.INT, i: value };
  return { name, type: A.FLOAT, f: value };
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: ELEM[type], shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

interface StoredWeight {
  name: string;
  dims: number[];
  type: ElemType;
  bytes: Uint8Array;
}

/** Tensors at or below this size stay inside the protobuf; larger ones go to external data. */
const INLINE_BYTES = 256;
const ALIGN = 64;

export interface BuiltGraph {
  model: Uint8Array;
  /** External data blocks in file order; their concatenation is the `.data` file. */
  data: Uint8Array[];
  dataBytes: number;
  dataFile: string;
}

export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly weights: StoredWeight[] = [];
  private readonly inlineTensors: onnxProto.onnx.ITensorProto[] = [];
  private readonly constCache = new Map<string, string>();
  private readonly names = new Set<string>();
  private counter = 0;
  private usesMicrosoft = false;

  constructor(readonly name: string) {}

  /** A value name not used before in this graph (for `op`'s `outputs` beside given names). */
  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /**
   * Marks `value` as a graph output named `name`: an Identity node renames it, unless a node
   * already produces it under that name (`op`'s `outputs`), which saves a kernel per run.
   */
  output(value: string, name: string, type: ElemType, dims: Dim[]): void {
    if (value !== name) this.op('Identity', [value], {}, { outputs: [name] });
    this.outputs.push(valueInfo(name, type, dims));
  }

  has(name: string): boolean {
    return this.names.has(name);
  }

  /** A named weight initializer. */
  weight(name: string, data: Float32Array | Int8Array | Uint8Array | Int32Array, dims: number[], type: ElemType = 'float32'): string {
    if (this.names.has(name)) throw new Error(`graph ${this.name}: initializer ${name} added twice`);
    this.names.add(name);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength <= INLINE_BYTES) {
      this.inlineTensors.push({ name, dims, dataType: ELEM[type], rawData: bytes.slice() });
    } else {
      this.weights.push({ name, dims, type, bytes });
    }
    return name;
  }

  /** Small int64 constant (shapes, axes, indices), deduplicated. */
  i64(values: number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.fresh('const_i64');
    this.inlineTensors.push({ name, dims, dataType: ELEM.int64, int64Data: values });
    this.constCache.set(key, name);
    return name;
  }

  /** Scalar (or small) float32 constant, deduplicated. */
  f32(values: number | number[], dims?: number[]): string {
    const arr = typeof values === 'number' ? [values] : values;
    const shape = dims ?? (typeof values === 'number' ? [] : [arr.length]);
    const key = `f32:${shape.join('x')}:${arr.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.fresh('const_f32');
    this.inlineTensors.push({ name, dims: shape, dataType: ELEM.float32, floatData: arr });
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node; returns its output names (fresh names unless `outputs` gives them). */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, opts: { domain?: string; outputs?: string[]; count?: number } = {}): string[] {
    const outputs = opts.outputs ?? Array.from({ length: opts.count ?? 1 }, () => this.fresh(opType.toLowerCase()));
    if (opts.domain === 'com.microsoft') this.usesMicrosoft = true;
    this.nodes.push({
      opType,
      domain: opts.domain ?? '',
      name: this.fresh(`n_${opType}`),
      input: inputs,
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  /** Single-output shorthand for `op`. */
  o(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain?: string): string {
    return this.op(opType, inputs, attrs, { domain })[0];
  }

  build(dataFile: string): BuiltGraph {
    const initializer: onnxProto.onnx.ITensorProto[] = [...this.inlineTensors];
    const data: Uint8Array[] = [];
    let offset = 0;
    for (const w of this.weights) {
      const pad = (ALIGN - (offset % ALIGN)) % ALIGN;
      if (pad) {
        data.push(new Uint8Array(pad));
        offset += pad;
      }
      initializer.push({
        name: w.name,
        dims: w.dims,
        dataType: ELEM[w.type],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: dataFile },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(w.bytes.byteLength) },
        ],
      });
      data.push(w.bytes);
      offset += w.bytes.byteLength;
    }
    const opsetImport = [{ domain: '', version: 17 }];
    if (this.usesMicrosoft) opsetImport.push({ domain: 'com.microsoft', version: 1 });
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'capfilt',
      opsetImport,
      graph: { name: this.name, node: this.nodes, input: this.inputs, output: this.outputs, initializer },
    });
    return { model: onnx.ModelProto.encode(model).finish(), data, dataBytes: offset, dataFile };
  }
}

/** Writes `<dir>/<file>` and its external data file next to it. */
export async function writeGraph(graph: BuiltGraph, modelPath: string, dataPath: string): Promise<void> {
  const { writeFile } = await import('node:fs/promises');
  await writeFile(modelPath, graph.model);
  const out = createWriteStream(dataPath);
  for (const block of graph.data) {
    if (!out.write(block)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** The external data as one Buffer, for in-memory sessions. */
export function graphDataBuffer(graph: BuiltGraph): Buffer {
  return Buffer.concat(graph.data, graph.dataBytes);
}
