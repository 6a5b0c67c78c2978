import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { envNameOf, leafPaths, loadConfig, parseSetArgs } from '../../src/config/load.ts';
import { isCapfiltError } from '../../src/core/errors.ts';
import { loadTokenizer } from '../../src/models/blip/tokenizer.ts';

/**
 * Text and configuration doors, property-based. The tokenizer sees every web text of a scrape
 * (any Unicode, lone surrogates, control characters, megabytes of one word); the config loader
 * sees whatever a user puts in a YAML file, the environment or --set. Neither may throw
 * anything but a CapfiltError, and the tokenizer's ids must stay inside the vocabulary.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'capfilt-prop-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('\u0000', '\uD800', '\uDFFF', '\u200B', '\u0301', '\uFEFF', '[SEP]', '[PAD]', '[DEC]', '##', ' ', 'a', 'é', '日本', '🙂', '\r\n'), maxLength: 40 }),
);

describe('tokenizer on any Unicode (property)', () => {
  const tok = loadTokenizer(join(ROOT, 'test', 'fixtures', 'parity', 't1-tokenizer'));

  it('encode, batch-encode and decode accept any string; ids stay in the vocabulary; batches keep their shape', () => {
    fc.assert(
      fc.property(fc.array(anyText, { minLength: 1, maxLength: 4 }), fc.integer({ min: 2, max: 40 }), (texts, maxLength) => {
        for (const t of texts) {
          const ids = tok.encode(t);
          expect(ids[0]).toBe(tok.special.cls);
          expect(ids[ids.length - 1]).toBe(tok.special.sep);
          for (const id of [...ids, ...tok.encodePlain(t)]) {
            expect(Number.isInteger(id) && id >= 0 && id < tok.vocabSize).toBe(true);
          }
          expect(typeof tok.decode(ids)).toBe('string');
        }
        const b = tok.encodeBatch(texts, { maxLength, padding: 'max_length' });
        expect(b.ids).toHaveLength(texts.length);
        for (let i = 0; i < texts.length; i++) {
          expect(b.ids[i]).toHaveLength(maxLength);
          expect(b.attentionMask[i]).toHaveLength(maxLength);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('decodes arbitrary id sequences, out-of-range ids included, without throwing anything uncoded', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -5, max: tok.vocabSize + 5 }), { maxLength: 40 }), (ids) => {
        try {
          expect(typeof tok.decode(ids)).toBe('string');
        } catch (e) {
          expect(isCapfiltError(e), String(e)).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a megabyte-long single word and a megabyte of spaces tokenize in bounded time', () => {
    const t0 = performance.now();
    expect(tok.encodeBatch(['x'.repeat(1_000_000), ' '.repeat(1_000_000)], { maxLength: 30, padding: 'longest' }).ids[0].length).toBeLessThanOrEqual(30);
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});

describe('config loader on any user input (property)', () => {
  const defaults = loadConfig({ env: {} }).config as unknown as Record<string, unknown>;
  const paths = leafPaths(defaults);
  const hostileValue = fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
    fc.constantFrom('-1', '0', '1e309', 'NaN', 'true', '../../etc/passwd', 'redis://[::1', 'cuda:99', ''),
  );

  const codedOrConfig = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      expect(isCapfiltError(e), `not a CapfiltError: ${(e as Error)?.stack ?? String(e)}`).toBe(true);
      expect(['CONFIG_INVALID', 'CONFIG_FILE_UNREADABLE']).toContain((e as { code: string }).code);
    }
  };

  it('random values for real options, from a file, the environment and --set: a config or a named CONFIG_* error', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...paths), hostileValue), { maxLength: 4 }),
        fc.array(fc.tuple(fc.constantFrom(...paths), fc.string({ maxLength: 12 })), { maxLength: 3 }),
        fc.array(fc.tuple(fc.constantFrom(...paths, 'no.such', 'input'), fc.string({ maxLength: 12 })), { maxLength: 2 }),
        (fileValues, envValues, setValues) => {
          const tree: Record<string, Record<string, unknown>> = {};
          for (const [p, v] of fileValues) {
            const [section, ...rest] = p.split('.');
            (tree[section] ??= {})[rest.join('.')] = v;
          }
          const f = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
          writeFileSync(f, stringify(tree));
          const env = Object.fromEntries(envValues.map(([p, v]) => [envNameOf(p), v]));
          codedOrConfig(() => loadConfig({ file: f, env, overrides: parseSetArgs(setValues.map(([p, v]) => `${p}=${v}`)) }));
        },
      ),
      { numRuns: 80 },
    );
  });

  it('arbitrary file contents (random YAML, JSON, bytes): a config or CONFIG_FILE_UNREADABLE / CONFIG_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.json(), fc.anything().map((v) => { try { return String(stringify(v) ?? ''); } catch { return ''; } }), fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1'))), (text) => {
        const f = join(dir, `r${Math.random().toString(36).slice(2)}.yaml`);
        writeFileSync(f, text);
        codedOrConfig(() => loadConfig({ file: f, env: {} }));
      }),
      { numRuns: 80 },
    );
  });

  it('malformed --set arguments are refused with a coded error', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 15 }), { maxLength: 3 }), (args) => {
        try {
          loadConfig({ env: {}, overrides: parseSetArgs(args) });
        } catch (e) {
          expect(isCapfiltError(e), `not a CapfiltError: ${String(e)}`).toBe(true);
        }
      }),
      { numRuns: 80 },
    );
  });
});
