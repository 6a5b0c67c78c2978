import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unzipSync, zipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../../src/core/errors.ts';
import { openPytorchBin, unpickle } from '../../../../../src/models/runtime/weights/pickle.ts';

// Fixtures are written by tools/fixtures/make_pickle_fixtures.py with PyTorch's own torch.save.
const FIX = new URL('../../../../fixtures/pickle/', import.meta.url).pathname;
const expected = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as Record<string, { shape: number[]; dtype: string; data: number[] }>;
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-pickle-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (isCapfiltError(e)) return e.code;
    throw e;
  }
  return undefined;
}

/** Independent safetensors parse: 8-byte header length, JSON header, F32 data. */
function readSafetensors(file: string): Map<string, { shape: number[]; data: Float32Array }> {
  const raw = readFileSync(file);
  const n = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const bytes = raw.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    out.set(name, { shape: e.shape, data: new Float32Array(Uint8Array.from(bytes).buffer) });
  }
  return out;
}

describe.each(['basic_p2.bin', 'basic_p4.bin'])('openPytorchBin(%s)', (file) => {
  const src = openPytorchBin(join(FIX, file));
  afterAll(() => src.close());

  it('lists every state-dict key in order', () => {
    expect(src.keys()).toEqual(Object.keys(expected));
  });

  it.each(Object.keys(expected))('reads %s exactly as torch holds it', (name) => {
    const want = expected[name];
    expect(src.shape(name)).toEqual(want.shape);
    const t = src.get(name);
    expect(t.shape).toEqual(want.shape);
    expect(Array.from(t.data)).toEqual(want.data.map((x) => Math.fround(x)));
  });

  it('reports the stored dtype', () => {
    expect(src.get('encoder.weight').sourceDtype).toBe('F32');
    expect(src.get('half.weight').sourceDtype).toBe('F16');
    expect(src.get('bf16.weight').sourceDtype).toBe('BF16');
    expect(src.get('position_ids').sourceDtype).toBe('I64');
  });

  it('gives WEIGHTS_MISSING_KEYS for an unknown name', () => {
    expect(src.has('nope')).toBe(false);
    expect(codeOf(() => src.get('nope'))).toBe('WEIGHTS_MISSING_KEYS');
  });
});

describe('t1 captioner as pytorch_model.bin', () => {
  it('gives tensors identical to the safetensors file it was converted from', () => {
    const want = readSafetensors(join(FIX, 't1_captioner.safetensors'));
    const src = openPytorchBin(join(FIX, 't1_captioner.bin'));
    try {
      expect(src.keys().sort()).toEqual([...want.keys()].sort());
      for (const [name, w] of want) {
        const t = src.get(name);
        expect(t.shape, name).toEqual(w.shape);
        expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(w.data.buffer)), name).toBe(true);
      }
    } finally {
      src.close();
    }
  });
});

describe('refusing what a state dict never needs', () => {
  it('refuses os.system (posix.system) without running it', () => {
    const marker = join(process.cwd(), 'capfilt-pwned-marker');
    let err: unknown;
    try {
      openPytorchBin(join(FIX, 'evil_system.bin'));
    } catch (e) {
      err = e;
    }
    expect(isCapfiltError(err, 'PICKLE_FORBIDDEN_GLOBAL')).toBe(true);
    expect((err as Error).message).toContain('posix.system');
    expect((err as Error).message).toContain('evil_system.bin');
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses builtins.eval from a protocol-4 pickle', () => {
    expect(() => openPytorchBin(join(FIX, 'evil_eval.bin'))).toThrow(/PICKLE_FORBIDDEN_GLOBAL: .*evil_eval\.bin.*builtins\.eval/);
  });

  it('refuses a forbidden global even as a bare GLOBAL opcode', () => {
    const pkl = Buffer.concat([Buffer.from([0x80, 2]), Buffer.from('cbuiltins\nexec\n', 'latin1'), Buffer.from('.')]);
    expect(() => unpickle(pkl, 'x.pkl')).toThrow(/PICKLE_FORBIDDEN_GLOBAL: x\.pkl.*builtins\.exec/);
  });

  it('gives PICKLE_INVALID for an unknown opcode and for a truncated stream', () => {
    expect(codeOf(() => unpickle(Buffer.from([0x80, 2, 0xff]), 'x.pkl'))).toBe('PICKLE_INVALID');
    expect(codeOf(() => unpickle(Buffer.from([0x80, 2, 0x58, 10, 0, 0, 0, 0x61]), 'x.pkl'))).toBe('PICKLE_INVALID');
    expect(codeOf(() => unpickle(Buffer.from([0x80, 2, 0x7d]), 'x.pkl'))).toBe('PICKLE_INVALID');
  });

  it('survives a dict that contains itself', () => {
    // {'a': <itself>} through BINPUT/BINGET
    const pkl = Uint8Array.from([0x80, 2, 0x7d, 0x71, 0, 0x58, 1, 0, 0, 0, 0x61, 0x68, 0, 0x73, 0x2e]);
    const file = join(tmp, 'cycle.bin');
    writeFileSync(file, zipSync({ 'archive/data.pkl': pkl }, { level: 0 }));
    const src = openPytorchBin(file);
    expect(src.keys()).toEqual([]);
    src.close();
  });

  it('calls the legacy non-zip format unsupported', () => {
    expect(() => openPytorchBin(join(FIX, 'legacy.bin'))).toThrow(/MODEL_UNSUPPORTED: .*legacy\.bin.*legacy/);
  });
});

describe('damaged zips', () => {
  it('rejects a file cut short', () => {
    const full = readFileSync(join(FIX, 'basic_p2.bin'));
    const cut = join(tmp, 'cut.bin');
    writeFileSync(cut, full.subarray(0, full.length - 40));
    expect(codeOf(() => openPytorchBin(cut))).toMatch(/^WEIGHTS_(HEADER_INVALID|TRUNCATED)$/);
  });

  it('rejects a tensor whose storage is shorter than its view', () => {
    // data.pkl says the storage holds 12 floats but the entry has only 8 bytes.
    const pkl = readDataPkl('basic_p2.bin');
    const file = join(tmp, 'short.bin');
    const entries: Record<string, Uint8Array> = { 'archive/data.pkl': pkl };
    for (let i = 0; i <= 8; i++) entries[`archive/data/${i}`] = new Uint8Array(8);
    writeFileSync(file, zipSync(entries, { level: 0 }));
    const src = openPytorchBin(file);
    try {
      expect(codeOf(() => src.get('encoder.weight'))).toBe('WEIGHTS_TENSOR_INVALID');
    } finally {
      src.close();
    }
  });

  it('follows the zip64 end record torch writes when the classic one is saturated', () => {
    // Checkpoints past 4 GiB carry 0xFFFF/0xFFFFFFFF in the classic record; torch always writes
    // the zip64 record too, so saturating the classic fields exercises that path on a small file.
    const raw = Buffer.from(readFileSync(join(FIX, 'basic_p2.bin')));
    const eocd = raw.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    raw.writeUInt16LE(0xffff, eocd + 8);
    raw.writeUInt16LE(0xffff, eocd + 10);
    raw.writeUInt32LE(0xffffffff, eocd + 12);
    raw.writeUInt32LE(0xffffffff, eocd + 16);
    const file = join(tmp, 'zip64.bin');
    writeFileSync(file, raw);
    const src = openPytorchBin(file);
    try {
      expect(src.keys()).toEqual(Object.keys(expected));
      expect(Array.from(src.get('transposed.weight').data)).toEqual(expected['transposed.weight'].data);
    } finally {
      src.close();
    }
  });

  it('reads deflated entries too', () => {
    const pkl = readDataPkl('basic_p2.bin');
    const orig = openPytorchBin(join(FIX, 'basic_p2.bin'));
    const file = join(tmp, 'deflated.bin');
    const entries: Record<string, Uint8Array> = { 'archive/data.pkl': pkl };
    // encoder.weight lives in storage 0 (3×4 floats).
    const w = orig.get('encoder.weight').data;
    entries['archive/data/0'] = new Uint8Array(w.buffer.slice(0));
    writeFileSync(file, zipSync(entries, { level: 6 }));
    orig.close();
    const src = openPytorchBin(file);
    try {
      expect(Array.from(src.get('encoder.weight').data)).toEqual(Array.from(w));
    } finally {
      src.close();
    }
  });
});

function readDataPkl(file: string): Uint8Array {
  const all = unzipSync(readFileSync(join(FIX, file)));
  return all[`${file.replace(/\.bin$/, '')}/data.pkl`];
}
