import { access, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { fileWriter, parquetWrite } from 'hyparquet-writer';
import { CapfiltError } from '../../core/errors.ts';
import type { RowRecord } from '../../core/records.ts';
import { commitFile, tempPathFor } from './atomic.ts';
import { decodeNpy, float16Table, writeNpy, type NpyMatrix } from './npy.ts';

/**
 * The kept rows' CLIP embeddings in clip-retrieval's layout, so its index builder (autofaiss)
 * and its users' notebooks read them unchanged, one triple per output shard:
 *   embeddings/img_emb/img_emb_NNNNN.npy        float16 [rows, dim]
 *   embeddings/text_emb/text_emb_NNNNN.npy      float16 [rows, dim]  the web text; zeros without one
 *   embeddings/metadata/metadata_NNNNN.parquet  key, url, caption (web text), selected — npy row order
 * Written before the shard's parquet, which is renamed into place last: a shard whose parquet
 * exists has its embeddings too.
 */
export function embeddingPaths(outDir: string, name: string): { img: string; text: string; metadata: string } {
  const root = join(outDir, 'embeddings');
  return {
    img: join(root, 'img_emb', `img_emb_${name}.npy`),
    text: join(root, 'text_emb', `text_emb_${name}.npy`),
    metadata: join(root, 'metadata', `metadata_${name}.parquet`),
  };
}

function decode(b64: string): Float32Array {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** One row of a triple: its metadata and its two embeddings (the text's: zeros without a web text). */
export interface EmbeddingRow {
  key: string;
  url: string | null;
  caption: string | null;
  selected: string | null;
  image: Float32Array;
  text: Float32Array;
}

/** Writes one shard's triple, rows in the given order (npy row i = metadata row i). */
async function writeTriple(outDir: string, name: string, rows: readonly EmbeddingRow[]): Promise<void> {
  const dim = rows[0].image.length;
  const p = embeddingPaths(outDir, name);
  for (const f of [p.img, p.text, p.metadata]) await mkdir(dirname(f), { recursive: true });
  await writeNpy(p.img, rows.map((r) => r.image), dim);
  await writeNpy(p.text, rows.map((r) => r.text), dim);
  const tmp = tempPathFor(p.metadata);
  try {
    await parquetWrite({
      writer: fileWriter(tmp),
      columnData: [
        { name: 'key', data: rows.map((r) => r.key), type: 'STRING' },
        { name: 'url', data: rows.map((r) => r.url), type: 'STRING' },
        { name: 'caption', data: rows.map((r) => r.caption), type: 'STRING' },
        { name: 'selected', data: rows.map((r) => r.selected), type: 'STRING' },
      ],
    });
  } catch (e) {
    await rm(tmp, { force: true });
    throw new CapfiltError('OUTPUT_WRITE_FAILED', `${p.metadata}: ${(e as Error).message}`, { file: p.metadata }, { cause: e });
  }
  await commitFile(tmp, p.metadata);
}

/**
 * Writes the triple of a shard's kept rows that have embeddings — from the row itself (the clip
 * stage's `clipEmbedding`) or, for a row rewritten from a parquet, from `carried`, the shard's
 * triple before the rewrite (rethreshold, retry-failed) — and returns how many rows it holds.
 * Writes nothing when no kept row has one. A row kept now but filtered when the triple was
 * written has none (a run saves kept rows' embeddings only). float16 values go through float32
 * and back unchanged.
 */
export async function writeEmbeddings(outDir: string, name: string, records: readonly RowRecord[], carried: ShardEmbeddings | null = null): Promise<number> {
  const at = new Map((carried?.keys ?? []).map((k, i) => [k, i]));
  const table = carried?.image.dtype === 'float16' ? float16Table() : null;
  const carriedRow = (m: NpyMatrix | null, i: number, dim: number): Float32Array => {
    const out = new Float32Array(dim);
    if (!m) return out;
    for (let j = 0; j < dim; j++) out[j] = table ? table[(m.data as Uint16Array)[i * dim + j]] : (m.data as Float32Array)[i * dim + j];
    return out;
  };
  const rows: EmbeddingRow[] = [];
  for (const r of records) {
    if (r.status !== 'kept') continue;
    const meta = { key: r.key, url: r.url, caption: r.text, selected: r.selected };
    if (r.clipEmbedding) {
      const image = decode(r.clipEmbedding.image);
      rows.push({ ...meta, image, text: r.clipEmbedding.text ? decode(r.clipEmbedding.text) : new Float32Array(image.length) });
      continue;
    }
    const i = at.get(r.key);
    if (i !== undefined && carried) rows.push({ ...meta, image: carriedRow(carried.image, i, carried.image.dim), text: carriedRow(carried.text, i, carried.image.dim) });
  }
  if (rows.length) await writeTriple(outDir, name, rows);
  return rows.length;
}

/** One shard's stored embeddings: the metadata keys in npy row order and the two matrices. */
export interface ShardEmbeddings {
  keys: string[];
  image: NpyMatrix;
  /** Read only when asked (readEmbeddings `text: true`). */
  text: NpyMatrix | null;
}

const exists = (f: string) => access(f).then(() => true, () => false);

async function readMatrix(file: string): Promise<NpyMatrix> {
  try {
    return decodeNpy(await readFile(file));
  } catch (e) {
    throw new CapfiltError('EMBEDDINGS_INVALID', `${file}: ${(e as Error).message}`, { file }, { cause: e });
  }
}

/**
 * Reads a shard's triple back (null when the shard has none: it kept no row with embeddings).
 * Checks what the writer guarantees: all three files present, as many npy rows as metadata rows,
 * and the same dim in both matrices.
 */
export async function readEmbeddings(outDir: string, name: string, o: { text?: boolean } = {}): Promise<ShardEmbeddings | null> {
  const p = embeddingPaths(outDir, name);
  const present = await Promise.all([p.img, p.text, p.metadata].map(exists));
  if (!present.some(Boolean)) return null;
  if (!present[0] || !present[2]) {
    throw new CapfiltError('EMBEDDINGS_INVALID', `${outDir}: shard ${name} has an incomplete embeddings triple (${[p.img, p.text, p.metadata].filter((_, i) => !present[i]).join(', ')} missing)`, { dir: outDir, shard: name });
  }
  let keys: string[];
  try {
    const rows = await parquetReadObjects({ file: await asyncBufferFromFile(p.metadata), columns: ['key'] });
    keys = rows.map((r) => String(r.key));
  } catch (e) {
    throw new CapfiltError('EMBEDDINGS_INVALID', `${p.metadata}: not a readable metadata parquet (${(e as Error).message})`, { file: p.metadata }, { cause: e });
  }
  const image = await readMatrix(p.img);
  if (image.rows !== keys.length) throw new CapfiltError('EMBEDDINGS_INVALID', `${p.img} has ${image.rows} rows but ${p.metadata} lists ${keys.length} keys`, { file: p.img });
  let text: NpyMatrix | null = null;
  if (o.text && present[1]) {
    text = await readMatrix(p.text);
    if (text.rows !== image.rows || text.dim !== image.dim) {
      throw new CapfiltError('EMBEDDINGS_INVALID', `${p.text} is (${text.rows}, ${text.dim}) but ${p.img} is (${image.rows}, ${image.dim})`, { file: p.text });
    }
  }
  return { keys, image, text };
}
