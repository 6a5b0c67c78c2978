import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileWriter, parquetWrite } from 'hyparquet-writer';
import { CapfiltError } from '../../core/errors.ts';
import type { RowRecord } from '../../core/records.ts';
import { commitFile, tempPathFor } from './atomic.ts';
import { writeNpy } from './npy.ts';

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

/** Writes the triple when any kept row carries embeddings; returns how many rows it holds. */
export async function writeEmbeddings(outDir: string, name: string, records: RowRecord[]): Promise<number> {
  const rows = records.filter((r) => r.status === 'kept' && r.clipEmbedding);
  if (!rows.length) return 0;
  const images = rows.map((r) => decode(r.clipEmbedding!.image));
  const dim = images[0].length;
  const texts = rows.map((r) => (r.clipEmbedding!.text ? decode(r.clipEmbedding!.text) : new Float32Array(dim)));
  const p = embeddingPaths(outDir, name);
  for (const f of [p.img, p.text, p.metadata]) await mkdir(dirname(f), { recursive: true });
  await writeNpy(p.img, images, dim);
  await writeNpy(p.text, texts, dim);
  const tmp = tempPathFor(p.metadata);
  try {
    await parquetWrite({
      writer: fileWriter(tmp),
      columnData: [
        { name: 'key', data: rows.map((r) => r.key), type: 'STRING' },
        { name: 'url', data: rows.map((r) => r.url), type: 'STRING' },
        { name: 'caption', data: rows.map((r) => r.text), type: 'STRING' },
        { name: 'selected', data: rows.map((r) => r.selected), type: 'STRING' },
      ],
    });
  } catch (e) {
    await rm(tmp, { force: true });
    throw new CapfiltError('OUTPUT_WRITE_FAILED', `${p.metadata}: ${(e as Error).message}`, { file: p.metadata }, { cause: e });
  }
  await commitFile(tmp, p.metadata);
  return rows.length;
}
