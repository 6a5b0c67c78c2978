/**
 * PyTorch `pytorch_model.bin` reader (the zip format torch.save has written since 1.6).
 *
 * Layout: a zip holding `<prefix>/data.pkl` (a pickle of the state dict whose tensors point
 * at storages through persistent ids) and one `<prefix>/data/<key>` entry per storage.
 * The zip is read through its central directory with positioned fd reads, so a multi-GB
 * checkpoint is never loaded whole: `get(name)` reads just the byte range its tensor spans.
 *
 * The pickle is interpreted by a restricted unpickler that knows only the opcodes a state
 * dict uses and only the globals in ALLOWED_GLOBALS. It never calls anything: the allowed
 * globals are recognised by name and rebuilt as plain data. Any other global (`posix.system`,
 * `builtins.eval`, a model class...) is refused with PICKLE_FORBIDDEN_GLOBAL the moment the
 * stream names it.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { inflateSync } from 'fflate';
import { CapfiltError } from '../../../core/errors.ts';
import type { WeightSource, WeightTensor } from '../types.ts';
import { refuseLfsPointer } from './lfs-pointer.ts';

// ---------------------------------------------------------------------------------------------
// zip (central directory + positioned reads)

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  /** Filled lazily from the local header. */
  dataOffset?: number;
}

class ZipReader {
  readonly entries = new Map<string, ZipEntry>();
  private readonly fd: number;
  private readonly fileSize: number;

  constructor(readonly file: string) {
    this.fd = openSync(file, 'r');
    try {
      this.fileSize = fstatSync(this.fd).size;
      this.readCentralDirectory();
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  readAt(position: number, length: number): Uint8Array {
    if (position + length > this.fileSize) {
      throw new CapfiltError('WEIGHTS_TRUNCATED', `${this.file}: needs bytes ${position}..${position + length}, file has ${this.fileSize}`, { file: this.file });
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, Math.min(length - done, 1 << 30), position + done);
      if (n === 0) throw new CapfiltError('WEIGHTS_TRUNCATED', `${this.file}: unexpected end of file at ${position + done}`, { file: this.file });
      done += n;
    }
    return out;
  }

  /** Bytes [start, start+length) of an entry's uncompressed content. */
  readEntry(entry: ZipEntry, start = 0, length = entry.size - start): Uint8Array {
    if (start < 0 || start + length > entry.size) {
      throw new CapfiltError('WEIGHTS_TENSOR_INVALID', `${this.file}: ${entry.name} has ${entry.size} bytes, a tensor needs ${start}..${start + length}`, { file: this.file, entry: entry.name });
    }
    const dataOffset = this.dataOffset(entry);
    if (entry.method === 0) return this.readAt(dataOffset + start, length);
    if (entry.method === 8) {
      const raw = inflateSync(this.readAt(dataOffset, entry.compressedSize));
      return raw.subarray(start, start + length);
    }
    throw new CapfiltError('MODEL_UNSUPPORTED', `${this.file}: zip entry ${entry.name} uses compression method ${entry.method}`, { file: this.file });
  }

  private dataOffset(entry: ZipEntry): number {
    if (entry.dataOffset === undefined) {
      const h = view(this.readAt(entry.localHeaderOffset, 30));
      if (h.getUint32(0, true) !== 0x04034b50) this.bad(`local header of ${entry.name} not found`);
      entry.dataOffset = entry.localHeaderOffset + 30 + h.getUint16(26, true) + h.getUint16(28, true);
    }
    return entry.dataOffset;
  }

  private readCentralDirectory(): void {
    const tailLen = Math.min(this.fileSize, 22 + 0xffff);
    const tail = this.readAt(this.fileSize - tailLen, tailLen);
    const t = view(tail);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (t.getUint32(i, true) === 0x06054b50) { eocd = i; break; }
    }
    if (eocd < 0) this.bad('no zip end-of-central-directory record');
    let count = t.getUint16(eocd + 10, true);
    let cdSize = t.getUint32(eocd + 12, true);
    let cdOffset = t.getUint32(eocd + 16, true);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      // zip64: the locator sits right before the classic record and points at the zip64 record.
      const locPos = this.fileSize - tailLen + eocd - 20;
      const loc = view(this.readAt(locPos, 20));
      if (loc.getUint32(0, true) !== 0x07064b50) this.bad('zip64 locator missing');
      const z = view(this.readAt(u64(loc, 8), 56));
      if (z.getUint32(0, true) !== 0x06064b50) this.bad('zip64 end record missing');
      count = u64(z, 32);
      cdSize = u64(z, 40);
      cdOffset = u64(z, 48);
    }
    const cd = view(this.readAt(cdOffset, cdSize));
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || cd.getUint32(p, true) !== 0x02014b50) this.bad(`central directory entry ${i} is malformed`);
      const nameLen = cd.getUint16(p + 28, true);
      const extraLen = cd.getUint16(p + 30, true);
      const commentLen = cd.getUint16(p + 32, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize) this.bad(`central directory entry ${i} runs past the directory's ${cdSize} bytes`);
      const name = new TextDecoder().decode(new Uint8Array(cd.buffer, cd.byteOffset + p + 46, nameLen));
      let compressedSize = cd.getUint32(p + 20, true);
      let size = cd.getUint32(p + 24, true);
      let localHeaderOffset = cd.getUint32(p + 42, true);
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cd.getUint16(e, true);
        const len = cd.getUint16(e + 2, true);
        if (id === 0x0001) {
          let q = e + 4;
          const field = (): number => {
            if (q + 8 > Math.min(extraEnd, e + 4 + len)) this.bad(`central directory entry ${i} has a short zip64 extra field`);
            q += 8;
            return u64(cd, q - 8);
          };
          if (size === 0xffffffff) size = field();
          if (compressedSize === 0xffffffff) compressedSize = field();
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = field();
        }
        e += 4 + len;
      }
      this.entries.set(name, { name, method: cd.getUint16(p + 10, true), compressedSize, size, localHeaderOffset });
      p = extraEnd + commentLen;
    }
  }

  private bad(what: string): never {
    throw new CapfiltError('WEIGHTS_HEADER_INVALID', `${this.file}: ${what}`, { file: this.file });
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u64(v: DataView, at: number): number {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new CapfiltError('WEIGHTS_HEADER_INVALID', `zip field at ${at} is out of range: ${n}`);
  return Number(n);
}

// ---------------------------------------------------------------------------------------------
// restricted unpickler

class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string { return `${this.module}.${this.name}`; }
}

interface StorageRef { kind: 'storage'; dtype: StorageDtype; key: string; numel: number }
interface TensorRef { kind: 'tensor'; storage: StorageRef; offset: number; size: number[]; stride: number[] }

type StorageDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const STORAGE_CLASSES: Record<string, StorageDtype> = {
  DoubleStorage: 'F64', FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

const ELEMENT_BYTES: Record<StorageDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** Everything a state dict may name. Storage classes are only ever used as type tags. */
const ALLOWED_GLOBALS = new Set<string>([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  ...Object.keys(STORAGE_CLASSES).map((c) => `torch.${c}`),
]);

const MARK = Symbol('mark');

/** Interprets a state-dict pickle. Returns the top-level object (a Map for a state dict). */
export function unpickle(data: Uint8Array, file: string): unknown {
  const dv = view(data);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let p = 0;

  const invalid = (what: string): never => {
    throw new CapfiltError('PICKLE_INVALID', `${file}: ${what} (pickle offset ${p})`, { file, offset: p });
  };
  const need = (n: number) => { if (p + n > data.length) invalid('pickle stream ends early'); };
  const u8 = () => { need(1); return data[p++]; };
  const u16 = () => { need(2); const v = dv.getUint16(p, true); p += 2; return v; };
  const u32 = () => { need(4); const v = dv.getUint32(p, true); p += 4; return v; };
  const i32 = () => { need(4); const v = dv.getInt32(p, true); p += 4; return v; };
  const bytes = (n: number) => { if (n < 0) invalid(`negative length ${n}`); need(n); const b = data.subarray(p, p + n); p += n; return b; };
  const utf8 = (n: number) => { try { return decoder.decode(bytes(n)); } catch { return invalid('string is not valid UTF-8'); } };
  const line = () => { const end = data.indexOf(0x0a, p); if (end < 0) invalid('unterminated line'); const s = new TextDecoder('latin1').decode(data.subarray(p, end)); p = end + 1; return s; };
  const pop = () => { if (stack.length === 0) invalid('stack underflow'); return stack.pop(); };
  const top = () => { if (stack.length === 0) invalid('stack underflow'); return stack[stack.length - 1]; };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) return invalid('MARK expected');
    const items = stack.splice(m);
    return items;
  };
  const findGlobal = (module: string, name: string): PyGlobal => {
    const g = new PyGlobal(module, name);
    if (!ALLOWED_GLOBALS.has(g.qualified)) {
      throw new CapfiltError('PICKLE_FORBIDDEN_GLOBAL', `${file}: pickle references ${g.qualified}, which a state dict never needs; refusing to load it (nothing was executed)`, { file, global: g.qualified });
    }
    return g;
  };
  const asDict = (o: unknown): Map<unknown, unknown> => (o instanceof Map ? o : invalid('SETITEM(S) target is not a dict'));
  const asList = (o: unknown): unknown[] => (Array.isArray(o) ? o : invalid('APPEND(S) target is not a list'));
  const int = (o: unknown, what: string): number => {
    if (typeof o === 'number' && Number.isInteger(o)) return o;
    if (typeof o === 'bigint' && o <= BigInt(Number.MAX_SAFE_INTEGER) && o >= -BigInt(Number.MAX_SAFE_INTEGER)) return Number(o);
    return invalid(`${what} is not an integer`);
  };
  const intTuple = (o: unknown, what: string): number[] => (Array.isArray(o) ? o.map((x) => int(x, what)) : invalid(`${what} is not a tuple`));

  const reduce = (fn: unknown, args: unknown): unknown => {
    if (!(fn instanceof PyGlobal)) return invalid('REDUCE on something that is not an allowed global');
    if (!Array.isArray(args)) return invalid(`REDUCE arguments for ${fn.qualified} are not a tuple`);
    switch (fn.qualified) {
      case 'collections.OrderedDict':
        if (args.length !== 0) invalid('OrderedDict with constructor arguments');
        return new Map();
      case 'torch._utils._rebuild_tensor_v2': {
        const [storage, offset, size, stride] = args;
        if (!isStorage(storage)) return invalid('_rebuild_tensor_v2 without a storage');
        const t: TensorRef = { kind: 'tensor', storage, offset: int(offset, 'storage offset'), size: intTuple(size, 'size'), stride: intTuple(stride, 'stride') };
        if (t.size.length !== t.stride.length) invalid('tensor size and stride ranks differ');
        return t;
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        if (!isTensor(args[0])) invalid(`${fn.name} without a tensor`);
        return args[0];
      default:
        return invalid(`${fn.qualified} is not callable here`);
    }
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: bytes(8); break; // FRAME: framing is only a read-ahead hint
      case 0x2e: { // STOP
        const result = pop();
        return result;
      }
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x64: { // DICT
        const items = popMark();
        const d = new Map();
        for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
        stack.push(d);
        break;
      }
      case 0x61: { const v = pop(); asList(top()).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); asList(top()).push(...items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); asDict(top()).set(k, v); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        const d = asDict(top());
        if (items.length % 2 !== 0) invalid('SETITEMS with an odd number of items');
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        break;
      }
      case 0x58: stack.push(utf8(u32())); break; // BINUNICODE
      case 0x8c: stack.push(utf8(u8())); break; // SHORT_BINUNICODE
      case 0x8d: { need(8); const n = u64(dv, p); p += 8; stack.push(utf8(n)); break; } // BINUNICODE8
      case 0x54: stack.push(new TextDecoder('latin1').decode(bytes(i32()))); break; // BINSTRING
      case 0x55: stack.push(new TextDecoder('latin1').decode(bytes(u8()))); break; // SHORT_BINSTRING
      case 0x42: stack.push(bytes(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(bytes(u8()).slice()); break; // SHORT_BINBYTES
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(decodeLong(bytes(u8()))); break; // LONG1
      case 0x8b: stack.push(decodeLong(bytes(i32()))); break; // LONG4
      case 0x47: { need(8); stack.push(dv.getFloat64(p, false)); p += 8; break; } // BINFLOAT (big-endian)
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4e: stack.push(null); break; // NONE
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: { const k = u8(); if (!memo.has(k)) invalid(`BINGET of unknown memo ${k}`); stack.push(memo.get(k)); break; } // BINGET
      case 0x6a: { const k = u32(); if (!memo.has(k)) invalid(`LONG_BINGET of unknown memo ${k}`); stack.push(memo.get(k)); break; } // LONG_BINGET
      case 0x63: { const module = line(); const name = line(); stack.push(findGlobal(module, name)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') invalid('STACK_GLOBAL needs two strings');
        stack.push(findGlobal(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); const fn = pop(); stack.push(reduce(fn, args)); break; } // REDUCE
      case 0x62: { // BUILD: only the `_metadata` attribute nn.Module.state_dict() sets on its OrderedDict
        const state = pop();
        if (!(top() instanceof Map) || !(state instanceof Map || state === null)) invalid('BUILD on something other than a dict');
        break;
      }
      case 0x51: stack.push(persistentLoad(pop(), invalid)); break; // BINPERSID
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      default:
        p -= 1;
        invalid(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

function persistentLoad(pid: unknown, invalid: (what: string) => never): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) return invalid('persistent id is not a storage reference');
  const [, type, key, , numel] = pid;
  if (!(type instanceof PyGlobal) || !(type.name in STORAGE_CLASSES)) return invalid('persistent id names no known storage type');
  if (typeof key !== 'string' || !/^[A-Za-z0-9_]+$/.test(key)) return invalid('storage key is not a plain name');
  const n = typeof numel === 'bigint' ? Number(numel) : numel;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) return invalid('storage size is not a non-negative integer');
  return { kind: 'storage', dtype: STORAGE_CLASSES[type.name], key, numel: n };
}

function decodeLong(b: Uint8Array): bigint | number {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function isStorage(o: unknown): o is StorageRef {
  return typeof o === 'object' && o !== null && (o as StorageRef).kind === 'storage';
}

function isTensor(o: unknown): o is TensorRef {
  return typeof o === 'object' && o !== null && (o as TensorRef).kind === 'tensor';
}

// ---------------------------------------------------------------------------------------------
// dtype conversion

const HALF_TO_FLOAT = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return table;
})();

/** Little-endian raw bytes (fresh, offset 0) → float32 values. */
function toFloat32(raw: Uint8Array, dtype: StorageDtype): Float32Array {
  const n = raw.byteLength / ELEMENT_BYTES[dtype];
  const whole = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength;
  const buf = whole ? raw.buffer : raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  switch (dtype) {
    case 'F32': return new Float32Array(buf);
    case 'F64': return Float32Array.from(new Float64Array(buf));
    case 'F16': {
      const h = new Uint16Array(buf);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = HALF_TO_FLOAT[h[i]];
      return out;
    }
    case 'BF16': {
      const h = new Uint16Array(buf);
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = h[i] << 16;
      return new Float32Array(bits.buffer);
    }
    case 'I64': {
      const src = new BigInt64Array(buf);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      return out;
    }
    case 'I32': return Float32Array.from(new Int32Array(buf));
    case 'I16': return Float32Array.from(new Int16Array(buf));
    case 'I8': return Float32Array.from(new Int8Array(buf));
    case 'U8':
    case 'BOOL': return Float32Array.from(new Uint8Array(buf));
  }
}

// ---------------------------------------------------------------------------------------------
// the WeightSource

/** Opens a PyTorch zip checkpoint. The pickle is parsed eagerly; tensor data is read on demand. */
export function openPytorchBin(path: string): WeightSource {
  let head: Uint8Array;
  const fd = openSync(path, 'r');
  try {
    head = new Uint8Array(64);
    head = head.subarray(0, readSync(fd, head, 0, head.length, 0));
  } finally {
    closeSync(fd);
  }
  refuseLfsPointer(path, head);
  if (!(head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04)) {
    const legacy = head[0] === 0x80;
    throw new CapfiltError(
      'MODEL_UNSUPPORTED',
      legacy
        ? `${path}: legacy (pre-zip) torch.save format is not supported; re-save it with torch>=1.6 or convert it to safetensors`
        : `${path}: not a PyTorch zip checkpoint`,
      { file: path },
    );
  }
  const zip = new ZipReader(path);
  try {
    const pklName = [...zip.entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (!pklName) throw new CapfiltError('WEIGHTS_HEADER_INVALID', `${path}: zip has no <archive>/data.pkl entry`, { file: path });
    const prefix = pklName.slice(0, -'data.pkl'.length);
    const order = zip.entries.get(`${prefix}byteorder`);
    if (order && new TextDecoder().decode(zip.readEntry(order)).trim() !== 'little') {
      throw new CapfiltError('MODEL_UNSUPPORTED', `${path}: big-endian checkpoints are not supported`, { file: path });
    }
    const root = unpickle(zip.readEntry(zip.entries.get(pklName)!), path);
    if (!(root instanceof Map)) throw new CapfiltError('PICKLE_INVALID', `${path}: top-level object is not a dict`, { file: path });
    const tensors = new Map<string, TensorRef>();
    collectTensors(root, '', tensors);
    return new PytorchBinSource(path, zip, prefix, tensors);
  } catch (e) {
    zip.close();
    throw e;
  }
}

/** Nested dicts (e.g. `{"model": state_dict}`) flatten to dotted names; non-tensor values are ignored. */
function collectTensors(d: Map<unknown, unknown>, prefix: string, out: Map<string, TensorRef>, seen = new Set<Map<unknown, unknown>>()): void {
  // A crafted pickle can make a dict contain itself through the memo.
  if (seen.has(d)) return;
  seen.add(d);
  for (const [k, v] of d) {
    if (typeof k !== 'string') continue;
    if (isTensor(v)) out.set(prefix + k, v);
    else if (v instanceof Map) collectTensors(v, `${prefix}${k}.`, out, seen);
  }
}

class PytorchBinSource implements WeightSource {
  constructor(
    readonly file: string,
    private readonly zip: ZipReader,
    private readonly prefix: string,
    private readonly tensors: Map<string, TensorRef>,
  ) {}

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  shape(name: string): number[] {
    return [...this.ref(name).size];
  }

  get(name: string): WeightTensor {
    const t = this.ref(name);
    const el = ELEMENT_BYTES[t.storage.dtype];
    const numel = t.size.reduce((a, b) => a * b, 1);
    const shape = [...t.size];
    if (numel === 0) return { shape, data: new Float32Array(0), sourceDtype: t.storage.dtype };
    if (t.offset < 0 || t.stride.some((s) => s < 0)) this.invalid(name, 'negative offset or stride');
    const span = t.size.reduce((acc, s, i) => acc + (s - 1) * t.stride[i], 0) + 1;
    if (t.offset + span > t.storage.numel) this.invalid(name, `spans elements ${t.offset}..${t.offset + span} of a storage holding ${t.storage.numel}`);
    const entry = this.zip.entries.get(`${this.prefix}data/${t.storage.key}`);
    if (!entry) this.invalid(name, `storage ${t.storage.key} is missing from the zip`);
    const flat = toFloat32(this.zip.readEntry(entry!, t.offset * el, span * el), t.storage.dtype);
    const data = isContiguous(t.size, t.stride) ? flat : gather(flat, t.size, t.stride, numel);
    return { shape, data, sourceDtype: t.storage.dtype };
  }

  close(): void {
    this.zip.close();
  }

  private ref(name: string): TensorRef {
    const t = this.tensors.get(name);
    if (!t) throw new CapfiltError('WEIGHTS_MISSING_KEYS', `${this.file}: no tensor named ${name}`, { file: this.file, missing: [name] });
    return t;
  }

  private invalid(name: string, what: string): never {
    throw new CapfiltError('WEIGHTS_TENSOR_INVALID', `${this.file}: tensor ${name} ${what}`, { file: this.file, tensor: name });
  }
}

function isContiguous(size: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    if (size[i] !== 1 && stride[i] !== expected) return false;
    expected *= size[i];
  }
  return true;
}

/** Row-major copy of a strided view (transposed or sliced tensors). */
function gather(flat: Float32Array, size: number[], stride: number[], numel: number): Float32Array {
  const out = new Float32Array(numel);
  const rank = size.length;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let i = 0; i < numel; i++) {
    out[i] = flat[src];
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      src += stride[d];
      if (idx[d] < size[d]) break;
      src -= stride[d] * size[d];
      idx[d] = 0;
    }
  }
  return out;
}
