import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { CapfiltError } from '../../../core/errors.ts';
import type { WeightSource, WeightTensor } from '../types.ts';
import { refuseLfsPointer } from './lfs-pointer.ts';

/**
 * safetensors reader. The header is parsed and every entry validated up front (offsets inside
 * the data section, no overlaps, byte length = numel × dtype size); tensor data is then read
 * one tensor at a time with positioned fd reads, so a multi-GB file never becomes one buffer.
 */

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Headers above this size are certainly corrupt (real ones are a few hundred KB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

interface Entry {
  dtype: string;
  shape: number[];
  start: number;
  end: number;
}

let halfTable: Float32Array | undefined;

/** float16 → float32 for all 65536 bit patterns, built once. */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    let v: number;
    if (exp === 0) v = frac * 2 ** -24;
    else if (exp === 31) v = frac ? NaN : Infinity;
    else v = (1 + frac / 1024) * 2 ** (exp - 15);
    halfTable[h] = sign * v;
  }
  return halfTable;
}

/** Converts little-endian raw bytes of `dtype` to float32. */
export function widenToFloat32(bytes: Buffer, dtype: string, count: number): Float32Array {
  const out = new Float32Array(count);
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : Buffer.from(bytes);
  switch (dtype) {
    case 'F32':
      out.set(new Float32Array(aligned.buffer, aligned.byteOffset, count));
      break;
    case 'F64':
      out.set(new Float64Array(aligned.buffer, aligned.byteOffset, count));
      break;
    case 'F16': {
      const t = halfToFloatTable();
      const h = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
      for (let i = 0; i < count; i++) out[i] = t[h[i]];
      break;
    }
    case 'BF16': {
      const h = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u[i] = h[i] << 16;
      break;
    }
    case 'I64': {
      const h = new BigInt64Array(aligned.buffer, aligned.byteOffset, count);
      for (let i = 0; i < count; i++) out[i] = Number(h[i]);
      break;
    }
    case 'I32':
      out.set(new Int32Array(aligned.buffer, aligned.byteOffset, count));
      break;
    case 'I16':
      out.set(new Int16Array(aligned.buffer, aligned.byteOffset, count));
      break;
    case 'I8':
      out.set(new Int8Array(aligned.buffer, aligned.byteOffset, count));
      break;
    case 'U8':
    case 'BOOL':
      out.set(new Uint8Array(aligned.buffer, aligned.byteOffset, count));
      break;
    default:
      throw new Error(`unhandled dtype ${dtype}`);
  }
  return out;
}

function readExactly(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? buf : buf.subarray(0, done);
}

export class SafetensorsFile implements WeightSource {
  readonly file: string;
  readonly metadata: Record<string, string>;
  private fd: number | null;
  private readonly entries: Map<string, Entry>;
  private readonly dataStart: number;

  constructor(file: string) {
    this.file = file;
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (e) {
      throw new CapfiltError('MODEL_DIR_INVALID', `${file}: cannot be opened (${(e as Error).message})`, { file }, { cause: e });
    }
    try {
      const size = fstatSync(fd).size;
      const head = readExactly(fd, Math.min(size, 64), 0);
      refuseLfsPointer(file, head);
      if (size < 8) throw new CapfiltError('WEIGHTS_TRUNCATED', `${file}: ${size} bytes, too short for the 8-byte header length`, { file, size });
      const headerLen = head.readBigUInt64LE(0);
      if (headerLen > BigInt(size - 8)) {
        throw new CapfiltError('WEIGHTS_TRUNCATED', `${file}: header length ${headerLen} runs past the end of the file (${size} bytes)`, { file, size, headerLen: Number(headerLen) });
      }
      if (headerLen > BigInt(MAX_HEADER_BYTES)) {
        throw new CapfiltError('WEIGHTS_HEADER_INVALID', `${file}: header length ${headerLen} is implausibly large`, { file });
      }
      const n = Number(headerLen);
      let header: unknown;
      try {
        header = JSON.parse(readExactly(fd, n, 8).toString('utf8'));
      } catch (e) {
        throw new CapfiltError('WEIGHTS_HEADER_INVALID', `${file}: header is not valid JSON (${(e as Error).message})`, { file }, { cause: e });
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) {
        throw new CapfiltError('WEIGHTS_HEADER_INVALID', `${file}: header is not a JSON object`, { file });
      }
      this.dataStart = 8 + n;
      const { entries, metadata } = parseEntries(header as Record<string, unknown>, file, size - this.dataStart);
      this.entries = entries;
      this.metadata = metadata;
      this.fd = fd;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  dtype(name: string): string {
    return this.entry(name).dtype;
  }

  shape(name: string): number[] {
    return [...this.entry(name).shape];
  }

  get(name: string): WeightTensor {
    const e = this.entry(name);
    if (this.fd === null) throw new CapfiltError('MODEL_DIR_INVALID', `${this.file}: read of "${name}" after close`, { file: this.file });
    const bytes = readExactly(this.fd, e.end - e.start, this.dataStart + e.start);
    if (bytes.length !== e.end - e.start) {
      throw new CapfiltError('WEIGHTS_TRUNCATED', `${this.file}: tensor "${name}" ends past the end of the file`, { file: this.file, tensor: name });
    }
    const count = e.shape.reduce((a, b) => a * b, 1);
    return { shape: [...e.shape], data: widenToFloat32(bytes, e.dtype, count), sourceDtype: e.dtype };
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new CapfiltError('WEIGHTS_MISSING_KEYS', `${this.file}: no tensor "${name}"`, { file: this.file, missing: [name] });
    return e;
  }
}

function parseEntries(header: Record<string, unknown>, file: string, dataSize: number): { entries: Map<string, Entry>; metadata: Record<string, string> } {
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};
  const bad = (tensor: string, problem: string): never => {
    throw new CapfiltError('WEIGHTS_TENSOR_INVALID', `${file}: tensor "${tensor}": ${problem}`, { file, tensor });
  };
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (value !== null && typeof value === 'object') metadata = value as Record<string, string>;
      continue;
    }
    if (value === null || typeof value !== 'object') bad(name, 'entry is not an object');
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof v.dtype !== 'string' || !(v.dtype in DTYPE_BYTES)) bad(name, `unsupported dtype ${JSON.stringify(v.dtype)}`);
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(name, `invalid shape ${JSON.stringify(v.shape)}`);
    const offs = v.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      bad(name, `invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [start, end] = offs as [number, number];
    if (start > end) bad(name, `data_offsets [${start}, ${end}] are reversed`);
    if (end > dataSize) {
      throw new CapfiltError('WEIGHTS_TRUNCATED', `${file}: tensor "${name}" data_offsets [${start}, ${end}] run past the data section (${dataSize} bytes)`, { file, tensor: name });
    }
    const shape = v.shape as number[];
    const dtype = v.dtype as string;
    const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (expected !== end - start) {
      bad(name, `dtype ${dtype} with shape [${shape.join(', ')}] needs ${expected} bytes but data_offsets span ${end - start}`);
    }
    entries.set(name, { dtype, shape, start, end });
  }
  const sorted = [...entries.entries()].filter(([, e]) => e.end > e.start).sort((a, b) => a[1].start - b[1].start);
  for (let i = 1; i < sorted.length; i++) {
    const [prevName, prev] = sorted[i - 1];
    const [curName, cur] = sorted[i];
    if (cur.start < prev.end) {
      throw new CapfiltError('WEIGHTS_TENSOR_INVALID', `${file}: tensors "${prevName}" [${prev.start}, ${prev.end}) and "${curName}" [${cur.start}, ${cur.end}) overlap`, { file, tensor: curName });
    }
  }
  return { entries, metadata };
}

export function openSafetensors(file: string): SafetensorsFile {
  return new SafetensorsFile(file);
}
