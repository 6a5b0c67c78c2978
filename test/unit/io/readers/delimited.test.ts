import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { delimitedRecords } from '../../../../src/io/readers/delimited.ts';

async function* chunked(buf: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let from = 0;
  for (const c of [...new Set(cuts)].filter((c) => c > 0 && c < buf.length).sort((a, b) => a - b)) {
    yield buf.subarray(from, c);
    from = c;
  }
  yield buf.subarray(from);
}

async function parse(text: string, cuts: number[] = [], delim = 44) {
  const out = [];
  for await (const r of delimitedRecords(chunked(Buffer.from(text), cuts), delim)) {
    out.push({ fields: r.fields.map((f) => f.toString()), offset: r.offset, malformed: r.malformed });
  }
  return out;
}

function quote(f: string): string {
  return /[",\n\r]/.test(f) ? `"${f.replace(/"/g, '""')}"` : f;
}

describe('delimitedRecords', () => {
  it('parses quoted fields with delimiters, doubled quotes, newlines and CRLF', async () => {
    const text = 'url,caption\r\nhttp://a,"a, b"\r\n\r\nhttp://b,"say ""hi""\nsecond line"\nhttp://c,\n';
    const recs = await parse(text);
    expect(recs.map((r) => r.fields)).toEqual([
      ['url', 'caption'],
      ['http://a', 'a, b'],
      ['http://b', 'say "hi"\nsecond line'],
      ['http://c', ''],
    ]);
    expect(recs.map((r) => r.offset)).toEqual([0, 13, 32, 66]);
    expect(recs.every((r) => r.malformed === null)).toBe(true);
  });

  it('gives the same records whatever the chunk boundaries (property)', async () => {
    const field = fc.string({ unit: fc.constantFrom('a', 'b', ',', '"', '\n', ' ', 'é', '\t') , maxLength: 8 });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(field, { minLength: 2, maxLength: 2 }), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(200), { maxLength: 6 }), async (rows, cuts) => {
        const usable = rows.filter((r) => !(r[0] === '' && r[1] === ''));
        const text = usable.map((r) => r.map(quote).join(',')).join('\n') + '\n';
        const recs = await parse(text, cuts);
        expect(recs.map((r) => r.fields)).toEqual(usable.map((r) => r.map((f) => f)));
      }),
      { numRuns: 150 },
    );
  });

  it('reports an unterminated quote at end of file and text after a closing quote', async () => {
    expect((await parse('a,"open\n'))[0].malformed).toMatch(/unterminated/);
    expect((await parse('a,"x"y\nb,c\n'))[0].malformed).toMatch(/after a closing quote/);
  });

  it('resynchronises after a record over maxRecordBytes', async () => {
    const text = `a,"${'x'.repeat(100)}\nb,c\n`;
    const out = [];
    for await (const r of delimitedRecords(chunked(Buffer.from(text), [7]), 44, 0, 50)) out.push(r);
    expect(out[0].malformed).toMatch(/maxRecordBytes 50/);
    expect(out[1].fields.map(String)).toEqual(['b', 'c']);
  });

  it('splits TSV on tabs', async () => {
    expect((await parse('u\tc\nhttp://x\ta,b\n', [], 9)).map((r) => r.fields)).toEqual([['u', 'c'], ['http://x', 'a,b']]);
  });
});
