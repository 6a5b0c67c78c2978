import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pullModel, registerPull } from '../../src/cli/models-pull.ts';
import { isCapfiltError } from '../../src/core/errors.ts';

/**
 * A stand-in for the Hugging Face hub on 127.0.0.1, implementing the endpoints
 * @huggingface/hub calls (tree listing, resolve with a bytes=0-0 probe, ranged GETs), with a
 * private repo that needs a token and a file that fails with 500.
 */
interface Repo { sha: string; files: Map<string, Buffer>; private?: boolean; broken?: string; cut?: { path: string; after: number; times: number } }

const TOKEN = 'hf_standin_token';
const big = randomBytes(3 * 1024 * 1024 + 17);
const clipWeights = randomBytes(4096 + 3);
const shards = [randomBytes(2048 + 5), randomBytes(1024 + 9)];
const shardIndex = (map: Record<string, string>) => JSON.stringify({ metadata: { total_size: 3072 }, weight_map: map });
const repos = new Map<string, Repo>([
  ['Salesforce/blip-image-captioning-base', { sha: 'a'.repeat(40), files: files({
    'config.json': '{"architectures":["BlipForConditionalGeneration"]}',
    'preprocessor_config.json': '{"image_size":384}',
    'tokenizer.json': '{"model":{}}',
    'tokenizer_config.json': '{}',
    'special_tokens_map.json': '{}',
    'vocab.txt': '[PAD]\n',
    'model.safetensors': big,
    'pytorch_model.bin': 'should not be downloaded when safetensors exist',
    'tf_model.h5': 'never needed',
    'README.md': '# model card',
  }) }],
  ['Salesforce/blip-itm-base-coco', { sha: 'b'.repeat(40), files: files({
    'config.json': '{"architectures":["BlipForImageTextRetrieval"]}',
    'vocab.txt': '[PAD]\n[UNK]\n',
    'tokenizer_config.json': '{"do_lower_case":true}',
    'pytorch_model.bin': randomBytes(2000),
  }) }],
  ['openai/clip-vit-base-patch32', { sha: 'f'.repeat(40), files: files({
    'config.json': '{"architectures":["CLIPModel"],"model_type":"clip"}',
    'preprocessor_config.json': '{"crop_size":224}',
    'tokenizer.json': '{"model":{"type":"BPE"}}',
    'tokenizer_config.json': '{}',
    'vocab.json': '{"a</w>":0}',
    'merges.txt': '#version: 0.2\n',
    'special_tokens_map.json': '{}',
    'model.safetensors': clipWeights,
    'pytorch_model.bin': 'should not be downloaded when safetensors exist',
    'open_clip_pytorch_model.bin': 'open_clip weights: never needed',
    'flax_model.msgpack': 'never needed',
    'tf_model.h5': 'never needed',
    'onnx/model.onnx': 'never needed',
    'README.md': '# model card',
  }) }],
  ['org/clip-bin-only', { sha: '1'.repeat(40), files: files({
    'config.json': '{"model_type":"clip"}',
    'vocab.json': '{}',
    'merges.txt': '',
    'vocab.txt': 'a BLIP file a CLIP pull leaves alone\n',
    'pytorch_model.bin': randomBytes(1500),
    'open_clip_pytorch_model.bin': 'never needed',
  }) }],
  ['laion/CLIP-ViT-bigG-14-laion2B-39B-b160k', { sha: '6'.repeat(40), files: files({
    'config.json': '{"architectures":["CLIPModel"],"model_type":"clip"}',
    'preprocessor_config.json': '{"crop_size":224}',
    'tokenizer.json': '{}',
    'model.safetensors.index.json': shardIndex({ 'text_model.a': 'model-00001-of-00002.safetensors', 'vision_model.b': 'model-00002-of-00002.safetensors' }),
    'model-00001-of-00002.safetensors': shards[0],
    'model-00002-of-00002.safetensors': shards[1],
    'open_clip_pytorch_model.bin': 'never needed',
    'pytorch_model-00001-of-00002.bin': 'never needed',
    'pytorch_model-00002-of-00002.bin': 'never needed',
    'pytorch_model.bin.index.json': 'never needed',
  }) }],
  ['org/clip-sharded', { sha: '3'.repeat(40), files: files({
    'config.json': '{"model_type":"clip"}',
    'tokenizer.json': '{}',
    'model.safetensors.index.json': shardIndex({ 'text_model.a': 'model-00001-of-00002.safetensors', 'text_model.b': 'model-00002-of-00002.safetensors', 'vision_model.c': 'model-00001-of-00002.safetensors' }),
    'model-00001-of-00002.safetensors': shards[0],
    'model-00002-of-00002.safetensors': shards[1],
    'pytorch_model-00001-of-00001.bin': 'never needed: safetensors shards exist',
    'pytorch_model.bin.index.json': 'never needed',
    'open_clip_pytorch_model.bin': 'never needed',
  }) }],
  ['org/sharded-escape', { sha: '4'.repeat(40), files: files({
    'config.json': '{"model_type":"clip"}',
    'tokenizer.json': '{}',
    'model.safetensors.index.json': shardIndex({ 'text_model.a': '../../etc/passwd' }),
  }) }],
  ['org/sharded-missing', { sha: '5'.repeat(40), files: files({
    'config.json': '{"model_type":"clip"}',
    'tokenizer.json': '{}',
    'model.safetensors.index.json': shardIndex({ 'text_model.a': 'model-00001-of-00002.safetensors', 'text_model.b': 'model-00002-of-00002.safetensors' }),
    'model-00001-of-00002.safetensors': shards[0],
  }) }],
  ['org/flaky-blip', { sha: '7'.repeat(40), cut: { path: 'model.safetensors', after: 1024 * 1024 + 5, times: 1 }, files: files({
    'config.json': '{"architectures":["BlipForConditionalGeneration"]}',
    'tokenizer.json': '{}',
    'model.safetensors': big,
  }) }],
  ['org/clip-no-tokenizer', { sha: '2'.repeat(40), files: files({ 'config.json': '{"model_type":"clip"}', 'vocab.txt': '[PAD]\n', 'model.safetensors': 'x' }) }],
  ['org/private-blip', { sha: 'c'.repeat(40), private: true, files: files({ 'config.json': '{}', 'tokenizer.json': '{}', 'model.safetensors': 'x' }) }],
  ['org/no-weights', { sha: 'd'.repeat(40), files: files({ 'config.json': '{}', 'tokenizer.json': '{}' }) }],
  ['org/broken', { sha: 'e'.repeat(40), broken: 'model.safetensors', files: files({ 'config.json': '{}', 'tokenizer.json': '{}', 'model.safetensors': randomBytes(100) }) }],
]);
const requested: string[] = [];
/** Every ranged GET of a file's content (beyond the bytes=0-0 probe): "repo/path start-end". */
const ranged: string[] = [];
/** Checkpoints live in LFS on the hub: the listing gives their sha256. */
const inLfs = (path: string) => /\.(safetensors|bin)$/.test(path);

function files(o: Record<string, string | Buffer>): Map<string, Buffer> {
  return new Map(Object.entries(o).map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(v)]));
}

/** A connection that drops part-way (`repo.cut`, `times` times): the first `after` bytes arrive. */
function cutShort(repo: Repo, path: string, res: ServerResponse, body: Buffer): boolean {
  if (repo.cut?.path !== path || repo.cut.times <= 0) return false;
  repo.cut.times--;
  res.write(body.subarray(0, repo.cut.after), () => res.destroy());
  return true;
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url!, 'http://x');
  const fail = (status: number, code: string) => { res.writeHead(status, { 'x-error-code': code, 'content-type': 'application/json' }); res.end(JSON.stringify({ error: code })); };
  const tree = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/);
  const resolveM = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
  const m = tree ?? resolveM;
  if (!m) return fail(404, 'NotFound');
  const repo = repos.get(decodeURIComponent(m[1]));
  if (!repo || (repo.private && req.headers.authorization !== `Bearer ${TOKEN}`)) return fail(401, 'RepoNotFound');
  const rev = decodeURIComponent(m[2]);
  if (rev !== 'main' && rev !== repo.sha) return fail(404, 'RevisionNotFound');
  if (tree) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify([...repo.files].map(([path, b]) => ({
      type: 'file', path, size: b.length, oid: createHash('sha1').update(b).digest('hex'),
      ...(inLfs(path) ? { lfs: { oid: createHash('sha256').update(b).digest('hex'), size: b.length, pointerSize: 134 } } : {}),
    }))));
    return;
  }
  const path = decodeURIComponent(m[3]);
  const body = repo.files.get(path);
  if (!body) return fail(404, 'EntryNotFound');
  const range = req.headers.range?.match(/^bytes=(\d+)-(\d+)$/);
  if (!range) requested.push(`${m[1]}/${path}`);
  if (repo.broken === path && !range) return fail(500, 'InternalError');
  const etag = `"${createHash('sha1').update(body).digest('hex')}"`;
  if (range) {
    const a = Number(range[1]);
    const b = Math.min(Number(range[2]), body.length - 1);
    if (b > 0) ranged.push(`${m[1]}/${path} ${a}-${b}`);
    res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${body.length}`, 'content-length': b - a + 1, etag, 'content-type': 'application/octet-stream' });
    if (b > 0 && cutShort(repo, path, res, body.subarray(a, b + 1))) return;
    res.end(body.subarray(a, b + 1));
    return;
  }
  res.writeHead(200, { 'content-length': body.length, etag, 'content-type': 'application/octet-stream' });
  if (cutShort(repo, path, res, body)) return;
  res.end(body);
}

let server: ReturnType<typeof createServer>;
let hubUrl = '';
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-pull-'));

beforeAll(async () => {
  server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hubUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(tmp, { recursive: true, force: true });
});

async function runCli(args: string[], env: Record<string, string | undefined>): Promise<{ stdout: string; stderr: string }> {
  const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_TOKEN: process.env.HF_TOKEN };
  const out: string[] = [];
  const err: string[] = [];
  const w1 = process.stdout.write.bind(process.stdout);
  const w2 = process.stderr.write.bind(process.stderr);
  Object.assign(process.env, env);
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k];
  process.stdout.write = ((c: string) => (out.push(String(c)), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string) => (err.push(String(c)), true)) as typeof process.stderr.write;
  try {
    const program = new Command('capfilt').exitOverride();
    registerPull(program.command('models'));
    await program.parseAsync(['node', 'capfilt', 'models', 'pull', ...args]);
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
  return { stdout: out.join(''), stderr: err.join('') };
}

describe('capfilt models pull against a stand-in hub', () => {
  it('pulls the blip-base alias into captioner/ and filter/ with only the needed files', async () => {
    const out = join(tmp, 'blip-base');
    requested.length = 0;
    const { stdout, stderr } = await runCli(['blip-base', '--out', out], { HF_ENDPOINT: `${hubUrl}/`, HF_TOKEN: undefined });
    expect(readdirSync(join(out, 'captioner')).sort()).toEqual(['config.json', 'model.safetensors', 'preprocessor_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt']);
    expect(readdirSync(join(out, 'filter')).sort()).toEqual(['config.json', 'pytorch_model.bin', 'tokenizer_config.json', 'vocab.txt']);
    expect(readFileSync(join(out, 'captioner', 'model.safetensors')).equals(big)).toBe(true);
    expect(readFileSync(join(out, 'filter', 'pytorch_model.bin')).equals(repos.get('Salesforce/blip-itm-base-coco')!.files.get('pytorch_model.bin')!)).toBe(true);
    expect(requested.some((r) => /tf_model|README|captioning-base\/pytorch_model/.test(r))).toBe(false);
    expect(stdout).toContain(`Salesforce/blip-image-captioning-base → ${join(out, 'captioner')}`);
    expect(stderr).toMatch(/model\.safetensors: \d+% of 3\.0 MiB|model\.safetensors 3\.0 MiB/);
  });

  it('pulls a CLIP alias into --out itself with exactly the CLIP files', async () => {
    const out = join(tmp, 'clip-b32');
    requested.length = 0;
    const { stdout } = await runCli(['clip-vit-base-patch32', '--out', out], { HF_ENDPOINT: hubUrl, HF_TOKEN: undefined });
    const clipFiles = ['config.json', 'merges.txt', 'model.safetensors', 'preprocessor_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json'];
    expect(readdirSync(out).sort()).toEqual(clipFiles);
    expect(requested.map((r) => r.replace('openai/clip-vit-base-patch32/', '')).sort()).toEqual(clipFiles);
    expect(readFileSync(join(out, 'model.safetensors')).equals(clipWeights)).toBe(true);
    expect(stdout).toBe(`openai/clip-vit-base-patch32 → ${out}\n`);
  });

  it('recognises a CLIP repo id by its config.json and falls back to pytorch_model.bin', async () => {
    const out = join(tmp, 'clip-bin');
    requested.length = 0;
    await runCli(['org/clip-bin-only', '--out', out], { HF_ENDPOINT: hubUrl, HF_TOKEN: undefined });
    expect(readdirSync(out).sort()).toEqual(['config.json', 'merges.txt', 'pytorch_model.bin', 'vocab.json']);
    expect(requested.some((r) => /open_clip|vocab\.txt/.test(r))).toBe(false);
    expect(readFileSync(join(out, 'pytorch_model.bin')).equals(repos.get('org/clip-bin-only')!.files.get('pytorch_model.bin')!)).toBe(true);
  });

  it('pulls a sharded checkpoint: the index, then every shard it names, nothing else', async () => {
    const out = join(tmp, 'clip-sharded');
    requested.length = 0;
    const { stderr } = await runCli(['org/clip-sharded', '--out', out], { HF_ENDPOINT: hubUrl, HF_TOKEN: undefined });
    const want = ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json'];
    expect(readdirSync(out).sort()).toEqual(want);
    expect(requested.map((r) => r.replace('org/clip-sharded/', '')).sort()).toEqual(want);
    expect(readFileSync(join(out, 'model-00002-of-00002.safetensors')).equals(shards[1])).toBe(true);
    expect(stderr).toMatch(/\(5 files, /);
    // The bigG alias names such a repo.
    const bigG = join(tmp, 'clip-bigg');
    await runCli(['clip-vit-bigg-14-laion2b', '--out', bigG], { HF_ENDPOINT: hubUrl, HF_TOKEN: undefined });
    expect(readdirSync(bigG).sort()).toEqual(['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'preprocessor_config.json', 'tokenizer.json']);
  });

  it('refuses a shard index that points outside the folder or names a shard the repo lacks', async () => {
    expect(await pullError('org/sharded-escape')).toMatch(/^MODEL_PULL_FAILED .*model\.safetensors\.index\.json: .*"\.\.\/\.\.\/etc\/passwd", which is not a file name beside the index/);
    expect(await pullError('org/sharded-missing')).toMatch(/^MODEL_PULL_FAILED .*names shard\(s\) the repository does not hold: model-00002-of-00002\.safetensors/);
  });

  it('keeps a checkpoint whose sha256 matches, fetches one that differs, and resumes an interrupted one', async () => {
    const out = join(tmp, 'rerun');
    const weights = join(out, 'captioner', 'model.safetensors');
    await runCli(['blip-base', '--out', out], { HF_ENDPOINT: hubUrl, HF_TOKEN: undefined });
    // A second pull fetches the small files again but not the 3 MiB checkpoint.
    requested.length = 0;
    ranged.length = 0;
    const again = await runCli(['blip-base', '--out', out], { HF_ENDPOINT: hubUrl, HF_TOKEN: undefined });
    expect(again.stderr).toMatch(/model\.safetensors: already here \(3\.0 MiB, sha256 matches\)/);
    expect([...requested, ...ranged].filter((r) => r.includes('captioning-base/model.safetensors'))).toEqual([]);
    expect(requested).toContain('Salesforce/blip-image-captioning-base/config.json');
    // The same size with one byte changed is fetched again.
    const bytes = readFileSync(weights);
    bytes[100] ^= 0xff;
    writeFileSync(weights, bytes);
    await runCli(['blip-base', '--out', out], { HF_ENDPOINT: hubUrl, HF_TOKEN: undefined });
    expect(readFileSync(weights).equals(big)).toBe(true);

    // The connection drops after 1 MiB: the pull fails, the part stays, a rerun fetches only the rest.
    const flaky = join(tmp, 'flaky');
    expect(await pullError('org/flaky-blip', { out: flaky })).toMatch(/^MODEL_PULL_FAILED .*downloading model\.safetensors failed/);
    expect(existsSync(join(flaky, 'model.safetensors'))).toBe(false);
    const kept = statSync(join(flaky, 'model.safetensors.part')).size;
    expect(kept).toBeGreaterThan(0);
    ranged.length = 0;
    const lines: string[] = [];
    await pullModel({ spec: 'org/flaky-blip', out: flaky, hubUrl, log: (l) => lines.push(l) });
    expect(readFileSync(join(flaky, 'model.safetensors')).equals(big)).toBe(true);
    expect(existsSync(join(flaky, 'model.safetensors.part'))).toBe(false);
    expect(ranged).toEqual([`org/flaky-blip/model.safetensors ${kept}-${big.length - 1}`]);
    expect(lines.join('\n')).toMatch(/resuming at/);

    // A stale part (another revision's bytes) fails the hash check, is removed, and the next pull starts over.
    rmSync(join(flaky, 'model.safetensors'));
    writeFileSync(join(flaky, 'model.safetensors.part'), randomBytes(2048));
    expect(await pullError('org/flaky-blip', { out: flaky })).toMatch(/sha256 [0-9a-f]{64} differs from the hub's .*resumed part was stale/);
    expect(existsSync(join(flaky, 'model.safetensors.part'))).toBe(false);
    await pullModel({ spec: 'org/flaky-blip', out: flaky, hubUrl, log: () => {} });
    expect(readFileSync(join(flaky, 'model.safetensors')).equals(big)).toBe(true);
  });

  it('honours --revision and HF_TOKEN for a private repo', async () => {
    const out = join(tmp, 'private');
    await runCli(['org/private-blip', '--out', out, '--revision', 'c'.repeat(40)], { HF_ENDPOINT: hubUrl, HF_TOKEN: TOKEN });
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
  });

  const pullError = async (spec: string, extra: Partial<Parameters<typeof pullModel>[0]> = {}) => {
    try {
      await pullModel({ spec, out: join(tmp, spec.replace(/\W/g, '_')), hubUrl, log: () => {}, ...extra });
    } catch (e) {
      if (isCapfiltError(e)) return `${e.code} ${e.message}`;
      throw e;
    }
    return 'no error';
  };

  it('fails clearly without the token, for an unknown revision, and for a missing repo', async () => {
    expect(await pullError('org/private-blip')).toMatch(/^MODEL_PULL_FAILED .*org\/private-blip.*HF_TOKEN/);
    expect(await pullError('org/private-blip', { accessToken: TOKEN, revision: 'nope' })).toMatch(/^MODEL_PULL_FAILED .*org\/private-blip@nope/);
    expect(await pullError('org/missing')).toMatch(/^MODEL_PULL_FAILED .*org\/missing/);
  });

  it('fails for a repo without weights and for a download that breaks, leaving no partial file', async () => {
    expect(await pullError('org/no-weights')).toMatch(/^MODEL_PULL_FAILED .*no model\.safetensors, pytorch_model\.bin or sharded index/);
    expect(await pullError('org/broken')).toMatch(/^MODEL_PULL_FAILED .*downloading model\.safetensors failed/);
    expect(await pullError('org/clip-no-tokenizer')).toMatch(/^MODEL_PULL_FAILED .*no CLIP tokenizer \(tokenizer\.json or vocab\.json \+ merges\.txt\)/);
    const dir = join(tmp, 'org_broken');
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(dir, 'model.safetensors.part'))).toBe(false);
  });

  it('refuses a spec that is neither an alias nor a repo id', async () => {
    expect(await pullError('../etc')).toMatch(/^CLI_USAGE /);
    expect(await pullError('blip-huge')).toMatch(/^CLI_USAGE .*blip-base, blip-large, clip-vit-base-patch32, .*clip-vit-h-14-laion2b/);
  });

  it('reports an unreachable hub as MODEL_PULL_FAILED', async () => {
    expect(await pullError('org/no-weights', { hubUrl: 'http://127.0.0.1:9' })).toMatch(/^MODEL_PULL_FAILED .*127\.0\.0\.1:9/);
  });
});
