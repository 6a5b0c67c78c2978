/**
 * `capfilt models pull <repo-id|alias> [--out dir] [--revision rev]`: fetches a BLIP or CLIP
 * model folder from the Hugging Face hub (or any server speaking its API: `HF_ENDPOINT`), with
 * `HF_TOKEN` for private or gated repos.
 *
 * Only the files the runtime reads are downloaded: config.json first, then the family's list
 * (chosen by the alias, else by config.json: a CLIP config is model_type "clip" or a CLIPModel
 * architecture) — preprocessor_config.json, the tokenizer files, and one checkpoint, in the
 * order transformers looks for one: model.safetensors, a sharded model.safetensors.index.json
 * (the index, then every shard it names), pytorch_model.bin, pytorch_model.bin.index.json. Other
 * weights a repo may carry (open_clip_*, flax/tf/onnx exports) are never fetched. Each file is
 * streamed to `<name>.part` and renamed when complete, so an interrupted pull never leaves a
 * truncated file under the real name. Checkpoints (LFS files, whose sha256 the listing gives)
 * are not fetched twice: a rerun keeps those whose hash matches and resumes an interrupted
 * `.part` with a ranged request (see `downloadTo`).
 *
 * BLIP aliases pull a captioner + filter pair into `<out>/captioner` and `<out>/filter`, the
 * layout `capfilt caption/score --model` and `capfilt models convert` take; CLIP aliases pull
 * one CLIPModel folder into `<out>` itself (`capfilt embed/clip-score --model`).
 */
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync, type WriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { downloadFile, listFiles } from '@huggingface/hub';
import type { Command } from 'commander';
import { CapfiltError } from '../core/errors.ts';
import { isClipConfig } from '../models/clip/config.ts';
import { readJson } from '../models/runtime/config-files.ts';
import { sha256 } from '../models/runtime/manifest.ts';
import { shardFilesOf } from '../models/runtime/weights/source.ts';

export type Family = 'blip' | 'clip';

export type Alias = { family: 'blip'; captioner: string; filter: string } | { family: 'clip'; repo: string };

export const ALIASES: Record<string, Alias> = {
  'blip-base': { family: 'blip', captioner: 'Salesforce/blip-image-captioning-base', filter: 'Salesforce/blip-itm-base-coco' },
  'blip-large': { family: 'blip', captioner: 'Salesforce/blip-image-captioning-large', filter: 'Salesforce/blip-itm-large-coco' },
  'clip-vit-base-patch32': { family: 'clip', repo: 'openai/clip-vit-base-patch32' },
  'clip-vit-base-patch16': { family: 'clip', repo: 'openai/clip-vit-base-patch16' },
  'clip-vit-large-patch14': { family: 'clip', repo: 'openai/clip-vit-large-patch14' },
  'clip-vit-large-patch14-336': { family: 'clip', repo: 'openai/clip-vit-large-patch14-336' },
  'clip-vit-b-32-laion2b': { family: 'clip', repo: 'laion/CLIP-ViT-B-32-laion2B-s34B-b79K' },
  'clip-vit-h-14-laion2b': { family: 'clip', repo: 'laion/CLIP-ViT-H-14-laion2B-s32B-b79K' },
  // Stored as safetensors shards and an index: past transformers' default shard size.
  'clip-vit-bigg-14-laion2b': { family: 'clip', repo: 'laion/CLIP-ViT-bigG-14-laion2B-39B-b160k' },
};

const REQUIRED = ['config.json'];
/** Beside config.json and the weights, the files each family's runtime reads (when present). */
const FILES: Record<Family, { optional: string[]; tokenizers: string[][] }> = {
  blip: {
    optional: ['preprocessor_config.json', 'tokenizer.json', 'vocab.txt', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json'],
    tokenizers: [['tokenizer.json'], ['vocab.txt']],
  },
  clip: {
    optional: ['preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt', 'special_tokens_map.json'],
    tokenizers: [['tokenizer.json'], ['vocab.json', 'merges.txt']],
  },
};
const WEIGHTS = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];

export interface PullOptions {
  /** Repo id (`org/name`) or an alias from ALIASES. */
  spec: string;
  out: string;
  revision?: string;
  hubUrl?: string;
  accessToken?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

export interface PulledRepo {
  repo: string;
  dir: string;
  files: { path: string; bytes: number }[];
}

export async function pullModel(o: PullOptions): Promise<PulledRepo[]> {
  const alias = ALIASES[o.spec];
  const jobs: { repo: string; dir: string; family?: Family }[] = !alias
    ? [{ repo: checkRepoId(o.spec), dir: o.out }]
    : alias.family === 'blip'
      ? [{ repo: alias.captioner, dir: join(o.out, 'captioner'), family: 'blip' }, { repo: alias.filter, dir: join(o.out, 'filter'), family: 'blip' }]
      : [{ repo: alias.repo, dir: o.out, family: 'clip' }];
  const out: PulledRepo[] = [];
  for (const job of jobs) out.push(await pullRepo(job.repo, job.dir, job.family, o));
  return out;
}

function checkRepoId(spec: string): string {
  if (!/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(spec) || spec.includes('..')) {
    throw new CapfiltError('CLI_USAGE', `"${spec}" is neither a hub repo id (org/name) nor an alias (${Object.keys(ALIASES).join(', ')})`, { spec });
  }
  return spec;
}

/** BLIP or CLIP by a downloaded config.json; the alias's family must agree with it. */
function familyOf(configFile: string, expected: Family | undefined, where: string, repo: string): Family {
  let json: unknown;
  try {
    json = readJson(configFile);
  } catch (e) {
    throw new CapfiltError('MODEL_PULL_FAILED', `${where}: config.json is not valid JSON (${(e as Error).message})`, { repo }, { cause: e });
  }
  const family: Family = isClipConfig(json) ? 'clip' : 'blip';
  if (expected && family !== expected) {
    throw new CapfiltError('MODEL_PULL_FAILED', `${where}: config.json describes a ${family.toUpperCase()} model, the alias a ${expected.toUpperCase()} one`, { repo });
  }
  return family;
}

async function pullRepo(repo: string, dir: string, expected: Family | undefined, o: PullOptions): Promise<PulledRepo> {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const hub = { repo: { type: 'model' as const, name: repo }, revision: o.revision, hubUrl: o.hubUrl, accessToken: o.accessToken };
  const where = `${repo}${o.revision ? `@${o.revision}` : ''} from ${o.hubUrl ?? 'https://huggingface.co'}`;
  /** The repo's files; the sha256 of those the hub stores in LFS (weights) lets a rerun keep or resume them. */
  const listed = new Map<string, RemoteFile>();
  try {
    for await (const entry of listFiles(hub)) {
      if (entry.type !== 'file') continue;
      const sha256 = entry.lfs?.oid && /^[0-9a-f]{64}$/.test(entry.lfs.oid) ? entry.lfs.oid : undefined;
      listed.set(entry.path, { size: entry.size, sha256 });
    }
  } catch (e) {
    throw new CapfiltError('MODEL_PULL_FAILED', `${where}: cannot list the repository (${(e as Error).message}); check the name, --revision, and HF_TOKEN for private or gated repos`, { repo }, { cause: e });
  }
  const missing = REQUIRED.filter((f) => !listed.has(f));
  if (missing.length) throw new CapfiltError('MODEL_PULL_FAILED', `${where}: repository has no ${missing.join(', ')}; is it a BLIP or CLIP model?`, { repo });
  const weights = WEIGHTS.find((f) => listed.has(f));
  if (!weights) throw new CapfiltError('MODEL_PULL_FAILED', `${where}: repository has no model.safetensors, pytorch_model.bin or sharded index (*.index.json)`, { repo });

  const checkTokenizer = (family: Family): void => {
    const { tokenizers } = FILES[family];
    if (!tokenizers.some((set) => set.every((f) => listed.has(f)))) {
      throw new CapfiltError('MODEL_PULL_FAILED', `${where}: repository has no ${family.toUpperCase()} tokenizer (${tokenizers.map((set) => set.join(' + ')).join(' or ')})`, { repo });
    }
  };
  // An alias's family is checked before anything is written; a repo id's is config.json's.
  if (expected) checkTokenizer(expected);
  mkdirSync(dir, { recursive: true });
  const files: PulledRepo['files'] = [];
  // config.json first: it says which family's files to fetch.
  files.push({ path: 'config.json', bytes: await downloadTo(hub, 'config.json', join(dir, 'config.json'), listed.get('config.json')!, where, log) });
  const family = familyOf(join(dir, 'config.json'), expected, where, repo);
  checkTokenizer(family);
  const { optional } = FILES[family];
  const wanted = [...optional.filter((f) => listed.has(f))];
  if (weights.endsWith('.index.json')) {
    // A sharded checkpoint: the index says which shards to fetch; each must be in the listing.
    files.push({ path: weights, bytes: await downloadTo(hub, weights, join(dir, weights), listed.get(weights)!, where, log) });
    let shards: string[];
    try {
      ({ shards } = shardFilesOf(join(dir, weights)));
    } catch (e) {
      throw new CapfiltError('MODEL_PULL_FAILED', `${where}: ${weights}: ${(e as Error).message}`, { repo, file: weights }, { cause: e });
    }
    const unlisted = shards.filter((f) => !listed.has(f));
    if (unlisted.length) throw new CapfiltError('MODEL_PULL_FAILED', `${where}: ${weights} names shard(s) the repository does not hold: ${unlisted.join(', ')}`, { repo, file: weights });
    wanted.push(...shards);
  } else {
    wanted.push(weights);
  }
  const total = wanted.reduce((a, f) => a + listed.get(f)!.size, files.reduce((a, f) => a + f.bytes, 0));
  log(`pulling ${family.toUpperCase()} ${where} → ${dir} (${wanted.length + files.length} files, ${formatBytes(total)})`);
  for (const path of wanted) {
    const bytes = await downloadTo(hub, path, join(dir, path), listed.get(path)!, where, log);
    files.push({ path, bytes });
  }
  return { repo, dir, files };
}

/** A file as the hub lists it: its size and, for LFS files, its sha256. */
interface RemoteFile {
  size: number;
  sha256?: string;
}

/**
 * Downloads `path` to `target` through `<target>.part`. A file stored in LFS (every checkpoint)
 * whose sha256 the listing gives is not fetched twice: one already at `target` with that hash
 * is kept, and a `.part` left by an interrupted pull is resumed with a ranged request and then
 * checked against the hash. Other files (configs, tokenizers: small, with no hash to check a
 * stale copy against) are always fetched whole.
 */
async function downloadTo(
  hub: { repo: { type: 'model'; name: string }; revision?: string; hubUrl?: string; accessToken?: string },
  path: string,
  target: string,
  expected: RemoteFile,
  where: string,
  log: (line: string) => void,
): Promise<number> {
  const part = `${target}.part`;
  const started = Date.now();
  const fail = (message: string, cause?: unknown): CapfiltError =>
    new CapfiltError('MODEL_PULL_FAILED', `${where}: downloading ${path} failed: ${message}`, { repo: hub.repo.name, file: path }, cause === undefined ? undefined : { cause });
  if (expected.sha256 && existsSync(target)) {
    const sameSize = statSync(target).size === expected.size;
    // Hashing gigabytes takes seconds: say why the pull pauses.
    if (sameSize && expected.size > 64 * 1024 * 1024) log(`  ${path}: checking the copy already here (sha256)`);
    if (sameSize && (await sha256(target)) === expected.sha256) {
      log(`  ${path}: already here (${formatBytes(expected.size)}, sha256 matches)`);
      return expected.size;
    }
    rmSync(target);
  }
  let have = expected.sha256 && existsSync(part) ? statSync(part).size : 0;
  if (have >= expected.size) have = 0;
  let sink: WriteStream | undefined;
  try {
    const blob = await downloadFile({ ...hub, path });
    if (!blob) throw new Error('the hub says the file does not exist');
    if (have > 0) log(`  ${path}: resuming at ${formatBytes(have)} of ${formatBytes(expected.size)}`);
    let done = have;
    let nextReport = Math.floor((have / expected.size) * 10) / 10 + 0.1;
    const progress = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        done += chunk.length;
        if (expected.size > 8 * 1024 * 1024 && done / expected.size >= nextReport) {
          log(`  ${path}: ${Math.floor((done / expected.size) * 100)}% of ${formatBytes(expected.size)}`);
          nextReport += 0.1;
        }
        cb(null, chunk);
      },
    });
    const source = have > 0 ? blob.slice(have) : blob;
    sink = createWriteStream(part, { flags: have > 0 ? 'a' : 'w' });
    await pipeline(Readable.fromWeb(source.stream() as WebReadableStream<Uint8Array>), progress, sink);
  } catch (e) {
    // The part file may still be opening when the download fails: let it close first.
    if (sink && !sink.closed) await new Promise<void>((r) => sink!.once('close', () => r()));
    // What arrived stays for a rerun to resume, where there is a hash to check it against.
    if (!expected.sha256 || (existsSync(part) && statSync(part).size === 0)) rmSync(part, { force: true });
    throw fail(messageOf(e), e);
  }
  const got = statSync(part).size;
  if (got !== expected.size) {
    rmSync(part, { force: true });
    throw fail(`received ${got} bytes, the hub lists ${expected.size}`);
  }
  if (expected.sha256) {
    const hash = await sha256(part);
    if (hash !== expected.sha256) {
      rmSync(part, { force: true });
      throw fail(`sha256 ${hash} differs from the hub's ${expected.sha256}${have > 0 ? ' (the resumed part was stale; it is removed, pull again)' : ''}`);
    }
  }
  renameSync(part, target);
  log(`  ${path} ${formatBytes(got)} in ${((Date.now() - started) / 1000).toFixed(1)} s${have > 0 ? ` (${formatBytes(got - have)} of it this time)` : ''}`);
  return got;
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** Adds `pull` to the `models` command group. */
export function registerPull(models: Command): void {
  models
    .command('pull')
    .description(`download a BLIP or CLIP model from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN); aliases: ${Object.keys(ALIASES).join(', ')}`)
    .argument('<repo>', 'hub repo id (org/name) or an alias (blip-*: captioner + filter into <out>/captioner and <out>/filter; clip-*: one folder, <out>)')
    .option('--out <dir>', 'output folder (default: models/<alias or repo name>)')
    .option('--revision <rev>', 'branch, tag or commit (default: main)')
    .action(async (spec: string, opts: { out?: string; revision?: string }) => {
      const out = resolve(opts.out ?? join('models', spec.split('/').pop()!));
      const pulled = await pullModel({
        spec,
        out,
        revision: opts.revision,
        hubUrl: process.env.HF_ENDPOINT?.replace(/\/+$/, '') || undefined,
        accessToken: process.env.HF_TOKEN || undefined,
      });
      for (const p of pulled) process.stdout.write(`${p.repo} → ${p.dir}\n`);
    });
}
