import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { CapfiltError } from '../../core/errors.ts';
import type { RuntimeOptions } from './types.ts';

/**
 * ONNX Runtime sessions with checked inputs. Every run compares the feeds with the session's
 * own input metadata (names, element types, ranks, fixed dims, and symbolic dims that must agree
 * across inputs) and fails with SESSION_INPUT_MISMATCH listing both sides.
 */

export type Feeds = Record<string, ort.Tensor>;
export type Fetches = Record<string, ort.Tensor>;

/** A graph as bytes plus its external data, or a path to a `.onnx` file (external data beside it). */
export type GraphSource = string | { model: Uint8Array; dataFile: string; data: Buffer };

function parseDevice(device: string): { kind: 'cpu' } | { kind: 'cuda'; id: number } {
  if (device === 'cpu') return { kind: 'cpu' };
  const m = /^cuda(?::(\d+))?$/.exec(device);
  if (m) return { kind: 'cuda', id: m[1] ? Number(m[1]) : 0 };
  throw new CapfiltError('DEVICE_UNAVAILABLE', `device "${device}" is not one of cpu, cuda, cuda:N`, { device });
}

/** Whether this onnxruntime-node install can load the CUDA execution provider. */
export function cudaAvailable(): boolean {
  const backend = ort.listSupportedBackends().find((b) => b.name === 'cuda');
  if (!backend) return false;
  if (backend.bundled) return true;
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  return existsSync(join(bin, 'libonnxruntime_providers_cuda.so'));
}

export function sessionOptions(opts: RuntimeOptions): ort.InferenceSession.SessionOptions {
  const device = parseDevice(opts.device);
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    // Failures surface as CapfiltErrors carrying ORT's message; its own stderr log would duplicate them.
    logSeverityLevel: 4,
    ...(opts.threads > 0 ? { intraOpNumThreads: opts.threads } : {}),
    ...(opts.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
  };
  if (device.kind === 'cpu') return { ...base, executionProviders: ['cpu'] };
  if (!cudaAvailable()) {
    throw new CapfiltError('DEVICE_UNAVAILABLE', `device "${opts.device}": this onnxruntime-node install has no CUDA execution provider (libonnxruntime_providers_cuda.so is absent; install onnxruntime-node with its CUDA postinstall enabled)`, { device: opts.device });
  }
  return { ...base, executionProviders: [{ name: 'cuda', deviceId: device.id } as ort.InferenceSession.ExecutionProviderConfig, 'cpu'] };
}

function describeSpec(meta: readonly ort.InferenceSession.ValueMetadata[]): string {
  return meta.map((m) => (m.isTensor ? `${m.name}:${m.type}[${m.shape.join(',')}]` : `${m.name}:non-tensor`)).join(' ');
}

function describeFeeds(feeds: Feeds): string {
  return Object.entries(feeds).map(([n, t]) => `${n}:${t.type}[${t.dims.join(',')}]`).join(' ');
}

export class GraphSession {
  private constructor(readonly name: string, private readonly session: ort.InferenceSession) {}

  /** `extra`: session options over capfilt's own (benchmarks pass ORT's profiling options here). */
  static async create(name: string, source: GraphSource, opts: RuntimeOptions, extra: ort.InferenceSession.SessionOptions = {}): Promise<GraphSession> {
    const options = { ...sessionOptions(opts), ...extra };
    try {
      const session = typeof source === 'string'
        ? await ort.InferenceSession.create(source, options)
        : await ort.InferenceSession.create(source.model, { ...options, externalData: [{ path: source.dataFile, data: source.data }] });
      return new GraphSession(name, session);
    } catch (e) {
      if (e instanceof CapfiltError) throw e;
      const code = opts.device === 'cpu' ? 'SESSION_RUN_FAILED' : 'DEVICE_UNAVAILABLE';
      throw new CapfiltError(code, `graph ${name}: session creation failed on ${opts.device}: ${(e as Error).message}`, { graph: name, device: opts.device }, { cause: e });
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Throws SESSION_INPUT_MISMATCH unless `feeds` fits the session's inputs exactly. */
  check(feeds: Feeds): void {
    const meta = this.session.inputMetadata;
    const problems: string[] = [];
    const symbols = new Map<string, { size: number; from: string }>();
    for (const m of meta) {
      const t = feeds[m.name];
      if (!t) {
        problems.push(`missing input ${m.name}`);
        continue;
      }
      if (!m.isTensor) continue;
      if (t.type !== m.type) problems.push(`${m.name}: dtype ${t.type}, expected ${m.type}`);
      if (m.shape.length && t.dims.length !== m.shape.length) {
        problems.push(`${m.name}: rank ${t.dims.length}, expected ${m.shape.length}`);
        continue;
      }
      m.shape.forEach((d, i) => {
        const got = t.dims[i];
        if (typeof d === 'number' && d >= 0) {
          if (got !== d) problems.push(`${m.name}: dim ${i} is ${got}, expected ${d}`);
        } else if (typeof d === 'string' && d) {
          const seen = symbols.get(d);
          if (!seen) symbols.set(d, { size: got, from: m.name });
          else if (seen.size !== got) problems.push(`${m.name}: dim ${i} (${d}) is ${got} but ${seen.from} has ${d} = ${seen.size}`);
        }
      });
    }
    const known = new Set(meta.map((m) => m.name));
    for (const n of Object.keys(feeds)) if (!known.has(n)) problems.push(`unexpected input ${n}`);
    if (problems.length) {
      throw new CapfiltError('SESSION_INPUT_MISMATCH', `graph ${this.name}: ${problems.join('; ')} (session expects ${describeSpec(meta)}; got ${describeFeeds(feeds)})`, { graph: this.name, problems });
    }
  }

  /**
   * `outputs`: the names to fetch, or preallocated output tensors by name, which ORT writes in
   * place. onnxruntime-node still copies every output into a fresh ArrayBuffer and returns that
   * copy, so preallocating saves no allocation; it only decides where the caller reads.
   */
  async run(feeds: Feeds, outputs?: string[] | Fetches): Promise<Fetches> {
    this.check(feeds);
    try {
      const res = outputs ? await this.session.run(feeds, outputs as ort.InferenceSession.FetchesType) : await this.session.run(feeds);
      return res as Fetches;
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph ${this.name}: run failed with inputs ${describeFeeds(feeds)}: ${(e as Error).message}`, { graph: this.name }, { cause: e });
    }
  }

  /** Ends ORT profiling (a session created with `enableProfiling`) and writes its JSON file. */
  endProfiling(): void {
    this.session.endProfiling();
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export function f32(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function i64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  const a = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) a[i] = BigInt(values[i]);
  return new ort.Tensor('int64', a, dims);
}
