/**
 * CSV/TSV records at byte level (RFC 4180 quoting: quoted fields may hold the delimiter, quotes
 * doubled as "" and newlines). Works on bytes so that every record keeps its byte offset (shard
 * planning seeks to it) and so that UTF-8 is validated per field, not per chunk. Blank lines are
 * not records. A record longer than `maxRecordBytes` (an unbalanced quote swallowing the file)
 * is reported malformed and parsing resumes at the next line.
 */
export interface DelimitedRecord {
  fields: Buffer[];
  offset: number;
  malformed: string | null;
}

const QUOTE = 34;
const LF = 10;
const CR = 13;
const QUOTE_BUF = Buffer.from('"');
const EMPTY = Buffer.alloc(0);

export async function* delimitedRecords(
  chunks: AsyncIterable<Buffer>,
  delimiter: number,
  startOffset = 0,
  maxRecordBytes = 1024 * 1024,
): AsyncGenerator<DelimitedRecord> {
  let fields: Buffer[] = [];
  let parts: Buffer[] = [];
  // 0: at field start, 1: unquoted field, 2: quoted field, 3: quote seen in quoted field, 4: skipping to the next line
  let state = 0;
  let malformed: string | null = null;
  let recordStart = startOffset;
  let pos = startOffset;
  let recordBytes = 0;

  const endField = (tail: Buffer) => {
    fields.push(parts.length ? Buffer.concat([...parts, tail]) : tail);
    parts = [];
  };
  const take = (): DelimitedRecord | null => {
    const last = fields.length - 1;
    if (last >= 0 && fields[last].length && fields[last][fields[last].length - 1] === CR) fields[last] = fields[last].subarray(0, -1);
    const blank = fields.length === 1 && fields[0].length === 0 && malformed === null;
    const rec = blank ? null : { fields, offset: recordStart, malformed };
    fields = [];
    malformed = null;
    recordBytes = 0;
    return rec;
  };

  for await (const chunk of chunks) {
    let seg = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (++recordBytes > maxRecordBytes && state !== 4) {
        malformed = `record longer than maxRecordBytes ${maxRecordBytes} (unbalanced quote?)`;
        parts = [];
        state = 4;
      }
      switch (state) {
        case 0:
          if (c === QUOTE) {
            state = 2;
            seg = i + 1;
          } else if (c === delimiter) {
            fields.push(EMPTY);
          } else if (c === LF) {
            fields.push(EMPTY);
            const r = take();
            if (r) yield r;
            recordStart = pos + i + 1;
          } else {
            state = 1;
            seg = i;
          }
          break;
        case 1:
          if (c === delimiter) {
            endField(chunk.subarray(seg, i));
            state = 0;
          } else if (c === LF) {
            endField(chunk.subarray(seg, i));
            state = 0;
            const r = take();
            if (r) yield r;
            recordStart = pos + i + 1;
          }
          break;
        case 2:
          if (c === QUOTE) {
            parts.push(chunk.subarray(seg, i));
            state = 3;
          }
          break;
        case 3:
          if (c === QUOTE) {
            parts.push(QUOTE_BUF);
            state = 2;
            seg = i + 1;
          } else if (c === delimiter || c === LF) {
            endField(EMPTY);
            state = 0;
            if (c === LF) {
              const r = take();
              if (r) yield r;
              recordStart = pos + i + 1;
            }
          } else if (c !== CR) {
            malformed ??= `text after a closing quote in field ${fields.length + 1}`;
            state = 1;
            seg = i;
          }
          break;
        case 4:
          if (c === LF) {
            fields = [];
            parts = [];
            yield { fields: [], offset: recordStart, malformed };
            malformed = null;
            recordBytes = 0;
            state = 0;
            recordStart = pos + i + 1;
          }
          break;
      }
    }
    if (state === 1 || state === 2) parts.push(chunk.subarray(seg));
    seg = 0;
    pos += chunk.length;
  }
  if (state === 4) {
    yield { fields: [], offset: recordStart, malformed };
    return;
  }
  if (state === 2) malformed ??= 'unterminated quoted field at end of file';
  if (state === 1 || state === 2 || state === 3) endField(EMPTY);
  else if (fields.length) fields.push(EMPTY);
  if (fields.length) {
    const r = take();
    if (r) yield r;
  }
}
