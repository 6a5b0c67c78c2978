import type { InputRow, RawRecord, ReaderOptions } from './types.ts';
import { InvalidUtf8 } from './types.ts';

/** Turns a parsed record into an `InputRow`, deciding whether it is usable. */
export function toInputRow(rec: RawRecord, rowIndex: number, o: ReaderOptions): InputRow {
  const v = rec.values ?? {};
  const rawUrl = v[o.urlCol];
  const rawText = o.captionCol === null ? null : v[o.captionCol];
  // No prototype: a column named "__proto__" must be stored like any other, not set the prototype.
  const extra: Record<string, unknown> = Object.create(null);
  for (const col of o.saveAdditionalColumns) extra[col] = plain(v[col]);
  const trusted = o.trustedCol !== null && truthy(v[o.trustedCol]);
  const row: InputRow = {
    rowIndex,
    url: typeof rawUrl === 'string' && rawUrl.trim() !== '' ? rawUrl.trim() : null,
    text: typeof rawText === 'string' ? rawText : null,
    extra,
    trusted,
    invalid: null,
  };
  const bad = (code: NonNullable<InputRow['invalid']>['code'], detail: string): InputRow => ({ ...row, invalid: { code, detail: `row ${rowIndex}: ${detail}` } });

  if (rec.malformed !== null) return bad(rec.malformedCode ?? 'INPUT_ROW_MALFORMED', rec.malformed);
  const badUtf8 = Object.entries(v).find(([, x]) => x instanceof InvalidUtf8);
  if (badUtf8) return bad('INPUT_ENCODING_INVALID', `column "${badUtf8[0]}" is not valid UTF-8`);
  if (rawUrl === undefined || rawUrl === null || (typeof rawUrl === 'string' && rawUrl.trim() === '')) {
    return bad('INPUT_URL_MISSING', `no value in url column "${o.urlCol}"`);
  }
  if (typeof rawUrl !== 'string') return bad('INPUT_URL_INVALID', `url column "${o.urlCol}" holds a ${typeName(rawUrl)}, not a string`);
  let parsed: URL;
  try {
    parsed = new URL(row.url!);
  } catch {
    return bad('INPUT_URL_INVALID', `not a URL: ${clip(row.url!)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return bad('INPUT_URL_INVALID', `scheme ${parsed.protocol} is not http(s)`);
  if (rawText !== null && rawText !== undefined && typeof rawText !== 'string') {
    return bad('INPUT_CAPTION_INVALID', `caption column "${o.captionCol}" holds a ${typeName(rawText)}, not a string`);
  }
  if (typeof rawText === 'string') {
    const bytes = Buffer.byteLength(rawText, 'utf8');
    if (bytes > o.maxCaptionBytes) return bad('INPUT_CAPTION_TOO_LONG', `caption is ${bytes} bytes, over maxCaptionBytes ${o.maxCaptionBytes}`);
  }
  return row;
}

function truthy(x: unknown): boolean {
  if (typeof x === 'string') return ['1', 'true', 'yes', 't', 'y'].includes(x.trim().toLowerCase());
  return x === true || x === 1 || x === 1n;
}

/** Extra column values as JSON-safe plain data (parquet INT64 arrives as bigint). */
function plain(x: unknown): unknown {
  if (x === undefined) return null;
  if (typeof x === 'bigint') return Number.isSafeInteger(Number(x)) ? Number(x) : x.toString();
  if (x instanceof InvalidUtf8) return null;
  if (x instanceof Uint8Array) return Buffer.from(x).toString('base64');
  if (x instanceof Date) return x.toISOString();
  if (Array.isArray(x)) return x.map(plain);
  if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)]));
  return x;
}

function typeName(x: unknown): string {
  return Array.isArray(x) ? 'list' : x === null ? 'null' : typeof x;
}

function clip(s: string): string {
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}
