import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { unzipSync, zipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../src/core/errors.ts';
import { openPytorchBin, unpickle } from '../../src/models/runtime/weights/pickle.ts';
import { openSafetensors } from '../../src/models/runtime/weights/safetensors.ts';
import type { WeightSource } from '../../src/models/runtime/types.ts';

/**
 * Model files are input too (a hub repo, a download cut short, a crafted checkpoint): random
 * mutations of valid safetensors files, pytorch zip checkpoints and their pickles must end in a
 * result or a CapfiltError with a code — never a RangeError from a DataView, a JSON SyntaxError,
 * a hang or an allocation of what a corrupt header asks for.
 */
const FIX = fileURLToPath(new URL('../fixtures/pickle/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'capfilt-prop-models-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

/** Applies mutations; `floor` keeps the first bytes (e.g. a magic number) so deeper code is reached. */
function mutate(data: Uint8Array, ms: Mutation[], floor = 0): Uint8Array {
  let b = Uint8Array.from(data);
  for (const m of ms) {
    if (b.length <= floor) break;
    const at = floor + (m.at % (b.length - floor));
    if (m.kind === 'flip') b[at] = m.byte;
    else if (m.kind === 'truncate') b = b.subarray(0, at);
    else b = Uint8Array.from([...b.subarray(0, at), ...m.bytes, ...b.subarray(at + m.bytes.length)]);
  }
  return b;
}

function codedOrOk(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    expect(isCapfiltError(e), `not a CapfiltError: ${(e as Error)?.stack ?? String(e)}`).toBe(true);
  }
}

/** Opens a weight file and reads every tensor it lists. */
function readEverything(open: () => WeightSource): void {
  codedOrOk(() => {
    const src = open();
    try {
      for (const k of src.keys()) {
        src.shape(k);
        const t = src.get(k);
        expect(t.data.length).toBe(t.shape.reduce((a, d) => a * d, 1));
      }
    } finally {
      src.close();
    }
  });
}

describe('safetensors reader on mutated files (property)', () => {
  const valid = new Uint8Array(readFileSync(join(FIX, 't1_captioner.safetensors')));
  const headerLength = Number(Buffer.from(valid).readBigUInt64LE(0));

  it('mutations anywhere in the header or the length field: tensors or a coded error', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (ms) => {
        // Mutate the length field and the JSON header, keep the (large) data as is.
        const head = mutate(valid.subarray(0, 8 + headerLength), ms);
        const p = join(dir, `m${n++}.safetensors`);
        writeFileSync(p, Buffer.concat([head, valid.subarray(8 + headerLength)]));
        readEverything(() => openSafetensors(p));
      }),
      { numRuns: 150 },
    );
  });

  it('any JSON header (random objects, absurd shapes and offsets): tensors or a coded error', () => {
    const entry = fc.record({
      dtype: fc.oneof(fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'F64', 'U8', 'BOOL'), fc.string()),
      shape: fc.oneof(fc.array(fc.oneof(fc.nat(8), fc.integer(), fc.double(), fc.constant(2 ** 40)), { maxLength: 4 }), fc.anything()),
      data_offsets: fc.oneof(fc.tuple(fc.nat(400), fc.nat(400)), fc.tuple(fc.integer(), fc.double()), fc.anything()),
    }, { requiredKeys: [] });
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof({ weight: 5, arbitrary: entry }, { weight: 1, arbitrary: fc.anything() }), { maxKeys: 5 }), fc.uint8Array({ maxLength: 400 }), (header, data) => {
        const json = Buffer.from(JSON.stringify(header));
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(json.length));
        const p = join(dir, `h${n++}.safetensors`);
        writeFileSync(p, Buffer.concat([len, json, data]));
        readEverything(() => openSafetensors(p));
      }),
      { numRuns: 200 },
    );
  });
});

describe('pytorch .bin reader on mutated checkpoints (property)', () => {
  const zip = new Uint8Array(readFileSync(join(FIX, 'basic_p2.bin')));
  const files = unzipSync(zip);
  const pklName = Object.keys(files).find((f) => f.endsWith('data.pkl'))!;
  const pickle = files[pklName];

  it('mutated pickle streams: a value or PICKLE_INVALID / PICKLE_FORBIDDEN_GLOBAL, nothing else', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        codedOrOk(() => unpickle(mutate(pickle, ms), 'mutated.pkl'));
      }),
      { numRuns: 400 },
    );
  });

  it('random opcode streams behind a protocol header', () => {
    fc.assert(
      fc.property(fc.constantFrom(2, 4, 5), fc.uint8Array({ maxLength: 200 }), (proto, body) => {
        codedOrOk(() => unpickle(Uint8Array.from([0x80, proto, ...body]), 'random.pkl'));
      }),
      { numRuns: 400 },
    );
  });

  it('mutated zip archives and re-zipped mutated pickles: tensors or a coded error', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.boolean(), (ms, inner) => {
        const bytes = inner ? zipSync({ ...files, [pklName]: mutate(pickle, ms) }, { level: 0 }) : mutate(zip, ms, 4);
        const p = join(dir, `z${n++}.bin`);
        writeFileSync(p, bytes);
        readEverything(() => openPytorchBin(p));
      }),
      { numRuns: 200 },
    );
  });
});
