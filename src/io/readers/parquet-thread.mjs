// Worker thread of the parquet reader (parquet.ts): decodes one row range at a time with
// hyparquet. Decoding runs here because a corrupt file can make hyparquet's synchronous decode
// loop forever, and only a thread can be stopped from outside (Worker.terminate). Plain
// JavaScript, so the thread starts without the TypeScript loader. One thread serves every file
// of the process in turn, so its compiled code stays warm.
//
// Request: { id, file, version, columns, rowStart, rowEnd } for a local file, or { id, meta,
// chunks, size, columns, rowStart, rowEnd } for an S3 object: the main thread fetched the byte
// ranges ({ start, data }) of the columns of one row group, and meta is the footer cut down to
// that row group (rows counted from its start), so this thread opens no connection. Reply: { id, length, cells,
// invalid } where cells[c] holds column c's values (an array or a typed array: columns copy
// across threads several times faster than the same values as rows) and length is the number
// of rows every column covered, or { id, error }. A string cell that is not valid UTF-8
// arrives as `marker + n`, its bytes as invalid[n] (a class instance would not survive the
// message copy).
import { parentPort, workerData } from 'node:worker_threads';
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';

const { marker } = workerData;
const fatal = new TextDecoder('utf-8', { fatal: true });
let invalid = [];
const parsers = {
  stringFromBytes(bytes) {
    if (!bytes) return bytes;
    try {
      return fatal.decode(bytes);
    } catch {
      invalid.push(bytes.slice());
      return `${marker}${invalid.length - 1}`;
    }
  },
};

// A byte-array cell is often a view into a whole page; copying the view alone keeps the reply
// as small as the data instead of dragging every page buffer along.
function compact(v) {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Uint8Array) return v.byteLength === v.buffer.byteLength ? v : v.slice();
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = compact(v[i]);
    return v;
  }
  if (!(v instanceof Date) && !ArrayBuffer.isView(v)) {
    for (const k of Object.keys(v)) v[k] = compact(v[k]);
  }
  return v;
}

// Footers of the files being read; `version` (size and mtime) tells a rewritten file apart.
const opened = new Map();
function open(file, version) {
  const key = `${file}\u0000${version}`;
  let hit = opened.get(key);
  if (!hit) {
    hit = asyncBufferFromFile(file).then(async (buf) => ({ buf, meta: await parquetMetadataAsync(buf) }));
    hit.catch(() => opened.delete(key));
    opened.set(key, hit);
    if (opened.size > 8) opened.delete(opened.keys().next().value);
  }
  return hit;
}

/**
 * Column c's values of rows [rowStart, rowEnd) from the decoded page chunks, and how many of
 * those rows the chunks covered (fewer than asked means a corrupt column chunk).
 */
function column(chunks, rowStart, rowEnd) {
  const pieces = [];
  let covered = 0;
  for (const { columnData, rowStart: s, rowEnd: e } of chunks) {
    const a = Math.max(s, rowStart);
    const b = Math.min(e, rowEnd);
    if (a >= b) continue;
    pieces.push(columnData.slice(a - s, b - s));
    covered += b - a;
  }
  let values = pieces.length === 1 ? pieces[0] : [];
  if (pieces.length !== 1) for (const p of pieces) for (let i = 0; i < p.length; i++) values.push(p[i]);
  if (Array.isArray(values)) values = values.map(compact);
  return { values, covered };
}

// An AsyncBuffer over the fetched ranges; asking for bytes outside them means the footer led
// the decoder somewhere it does not describe, which fails this row group like a bad page.
function fetchedBuffer(chunks, size) {
  return {
    byteLength: size,
    slice(start, end = size) {
      const c = chunks.find((x) => start >= x.start && start <= x.start + x.data.byteLength);
      if (!c) throw new Error(`bytes ${start}-${end} lie outside the column chunks the footer lists for this row group`);
      return c.data.slice(start - c.start, Math.min(end, c.start + c.data.byteLength) - c.start);
    },
  };
}

parentPort.on('message', async ({ id, file, version, meta: given, chunks: fetched, size, columns, rowStart, rowEnd }) => {
  invalid = [];
  try {
    const { buf, meta } = given ? { buf: fetchedBuffer(fetched, size), meta: given } : await open(file, version);
    const index = new Map(columns.map((c, i) => [c, i]));
    const chunks = columns.map(() => []);
    // Columns straight from the decoder (no row objects built here), clipped to the range.
    await parquetRead({
      file: buf, metadata: meta, columns, rowStart, rowEnd, compressors, parsers,
      onChunk: (chunk) => chunks[index.get(chunk.columnName)]?.push(chunk),
    });
    const built = chunks.map((c) => column(c, rowStart, rowEnd));
    const length = Math.min(rowEnd - rowStart, ...built.map((b) => b.covered));
    parentPort.postMessage({ id, length, cells: built.map((b) => b.values), invalid });
  } catch (e) {
    parentPort.postMessage({ id, error: e instanceof Error ? e.message : String(e) });
  }
});
