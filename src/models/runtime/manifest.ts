import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import { writeGraph, type BuiltGraph } from './graph/builder.ts';
import { readJson } from './config-files.ts';
import type { RuntimeOptions } from './types.ts';
import { shardFilesOf } from './weights/source.ts';

/**
 * A converted model folder: `<graph>.onnx` + `<graph>.onnx.data` per graph, the source folder's
 * config/preprocessor/tokenizer files, and manifest.json (format, architecture, precision,
 * graphs, sha256 of every source file). Loaded by path in seconds. Each family names its own
 * format string so a folder of one family is never mistaken for another's.
 */

export const MANIFEST = 'manifest.json';

export interface Manifest {
  format: string;
  architecture: string;
  precision: RuntimeOptions['precision'];
  graphs: Record<string, { model: string; data: string }>;
  source: { dir: string; files: Record<string, string>; weightDtypes: string[] };
  config: Record<string, unknown>;
  createdBy: string;
  /** Family-specific values the graphs do not carry (CLIP's logit_scale). */
  extra?: Record<string, unknown>;
}

export function isConverted(dir: string): boolean {
  return existsSync(join(dir, MANIFEST));
}

export function graphFile(name: string): { model: string; data: string } {
  return { model: `${name}.onnx`, data: `${name}.onnx.data` };
}

/** The manifest of a converted folder; MODEL_DIR_INVALID unless it is one of `formats`. */
export function readManifest(dir: string, formats: readonly string[]): Manifest {
  const file = join(dir, MANIFEST);
  let m: Manifest;
  try {
    m = readJson(file) as Manifest;
  } catch (e) {
    throw new CapfiltError('MODEL_DIR_INVALID', `${file}: cannot be read as JSON (${(e as Error).message})`, { file }, { cause: e });
  }
  if (typeof m !== 'object' || m === null || !formats.includes(m.format) || typeof m.graphs !== 'object' || m.graphs === null) {
    throw new CapfiltError('MODEL_DIR_INVALID', `${file}: not a ${formats.join(' or ')} manifest`, { file });
  }
  return m;
}

/** Path of each graph the family needs, checked to exist in the converted folder. */
export function manifestGraphs(dir: string, m: Manifest, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const g = m.graphs[name];
    if (!g || !existsSync(join(dir, g.model))) throw new CapfiltError('MODEL_DIR_INVALID', `${dir}: graph ${name} is missing from the converted folder`, { dir, graph: name });
    out[name] = join(dir, g.model);
  }
  return out;
}

export async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface ConvertedFolderSpec {
  inDir: string;
  outDir: string;
  weightFile: string;
  format: string;
  architecture: string;
  precision: RuntimeOptions['precision'];
  graphs: Iterable<[string, BuiltGraph]>;
  /** Source files copied beside the graphs when present (config.json is always copied). */
  copyFiles: string[];
  /** Files written when the source has none (e.g. a default preprocessor_config.json). */
  defaults?: Record<string, unknown>;
  weightDtypes: () => string[];
  config: Record<string, unknown>;
  extra?: () => Record<string, unknown>;
}

/**
 * Writes a converted folder into a temporary sibling and renames it into place, so a folder is
 * never half-written; the graphs are consumed one at a time (one graph's weights in memory).
 */
export async function writeConvertedFolder(spec: ConvertedFolderSpec): Promise<Manifest> {
  const tmp = `${spec.outDir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  try {
    const graphs: Manifest['graphs'] = {};
    for (const [name, g] of spec.graphs) {
      const f = graphFile(name);
      await writeGraph(g, join(tmp, f.model), join(tmp, f.data));
      graphs[name] = f;
    }
    const files: Record<string, string> = {};
    files[basename(spec.weightFile)] = await sha256(spec.weightFile);
    // A sharded checkpoint's provenance is its index and every shard the index names.
    if (spec.weightFile.endsWith('.index.json')) {
      for (const shard of shardFilesOf(spec.weightFile).shards) files[shard] = await sha256(join(dirname(spec.weightFile), shard));
    }
    for (const f of ['config.json', ...spec.copyFiles]) {
      const p = join(spec.inDir, f);
      if (!existsSync(p)) continue;
      files[f] = await sha256(p);
      await copyFile(p, join(tmp, f));
    }
    for (const [f, value] of Object.entries(spec.defaults ?? {})) {
      if (!files[f]) await writeFile(join(tmp, f), `${JSON.stringify(value, null, 2)}\n`);
    }
    const manifest: Manifest = {
      format: spec.format,
      architecture: spec.architecture,
      precision: spec.precision,
      graphs,
      source: { dir: resolve(spec.inDir), files, weightDtypes: spec.weightDtypes() },
      config: spec.config,
      createdBy: 'capfilt models convert',
      ...(spec.extra ? { extra: spec.extra() } : {}),
    };
    await writeFile(join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    await rm(spec.outDir, { recursive: true, force: true });
    await rename(tmp, spec.outDir);
    return manifest;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
