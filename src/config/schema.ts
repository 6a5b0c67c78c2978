import { z } from 'zod';
import { STAGE_ORDER, type StageName } from '../core/shard.ts';

/**
 * The one typed configuration of a run. Every option has its default and a comment in
 * config/default.yaml (that file is the source of the defaults; this schema only validates).
 * Objects are strict so that a misspelt option is an error, not a silently ignored key.
 * Each part of the system receives its slice (`config.download`, `config.caption`, ...).
 */
const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const prob = z.number().min(0).max(1);

/** The stage names (src/core/shard.ts, the stage table's names), in pipeline order. */
export const STAGES = STAGE_ORDER;

/** One positive integer per stage: `pipeline.concurrency.<stage>`. */
const perStage = <T extends z.ZodTypeAny>(t: T) => z.strictObject(Object.fromEntries(STAGES.map((s) => [s, t])) as Record<StageName, T>);

export const redisSchema = z.strictObject({
  url: z.string().regex(/^rediss?(\+cluster)?:\/\//, 'a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL'),
  prefix: z.string().min(1).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." or "-"'),
  autoStart: z.boolean(),
  outageTimeoutMs: posInt,
});

export const inputSchema = z.strictObject({
  path: z.string().min(1).nullable(),
  format: z.enum(['auto', 'parquet', 'csv', 'tsv', 'jsonl', 'txt']),
  urlCol: z.string().min(1),
  captionCol: z.string().min(1).nullable(),
  saveAdditionalColumns: z.array(z.string().min(1)),
  trusted: z.boolean(),
  trustedCol: z.string().min(1).nullable(),
  maxCaptionBytes: posInt,
  maxRecordBytes: posInt,
  allowEmpty: z.boolean(),
});

export const outputSchema = z.strictObject({
  dir: z.string().min(1).nullable(),
});

export const shardsSchema = z.strictObject({
  rows: posInt.max(1_000_000),
});

export const pipelineSchema = z.strictObject({
  stages: z.array(z.enum(STAGES)).min(1),
  maxInFlightShards: posInt,
  attempts: posInt,
  backoffMs: nonNegInt,
  lockDurationMs: z.number().int().min(1000),
  stalledIntervalMs: z.number().int().min(1000),
  maxStalledCount: nonNegInt,
  concurrency: perStage(posInt),
});

export const stagingSchema = z.strictObject({
  backend: z.enum(['fs', 'redis', 's3']),
  dir: z.string().min(1).nullable(),
});

/** S3-compatible object storage, used where input.path, output.dir or staging.dir is an s3:// URL. */
export const s3Schema = z.strictObject({
  /** http(s) URL of a MinIO/Ceph/R2-style server; null: AWS itself (or AWS_ENDPOINT_URL[_S3]). */
  endpoint: z.string().regex(/^https?:\/\/[^/]+/, 'an http:// or https:// URL').nullable(),
  /** null: the AWS chain (AWS_REGION, ~/.aws/config), else us-east-1. */
  region: z.string().min(1).nullable(),
  /** Path-style URLs (http://host/bucket/key); null: on when an endpoint is set (MinIO, Ceph need it). */
  forcePathStyle: z.boolean().nullable(),
  /** Multipart part size for uploads, MiB (S3's minimum is 5). */
  partSizeMiB: z.number().int().min(5).max(5120),
  /** Parts of one object uploaded at once. */
  uploadConcurrency: posInt,
  /** Attempts of one request (the SDK's retry strategy: throttling, 5xx, network errors). */
  maxAttempts: posInt,
});

export const downloadSchema = z.strictObject({
  concurrency: posInt,
  timeoutMs: posInt,
  connectTimeoutMs: posInt,
  retries: nonNegInt,
  retryBaseMs: nonNegInt,
  maxBodyBytes: posInt,
  maxRedirects: nonNegInt,
  perHostConcurrency: posInt,
  perHostDelayMs: nonNegInt,
  userAgentToken: z.string().min(1).nullable(),
  userAgentUrl: z.string().min(1).nullable(),
  disallowedHeaderDirectives: z.array(z.string().min(1)),
  ssrfAllowlist: z.array(z.string().min(1)),
});

export const imageSchema = z.strictObject({
  size: posInt,
  resizeMode: z.enum(['no', 'border', 'keep_ratio', 'keep_ratio_largest', 'center_crop']),
  format: z.enum(['jpg', 'webp', 'png']),
  quality: z.number().int().min(1).max(100),
  minImageSize: nonNegInt,
  maxImageArea: posInt.nullable(),
  maxAspectRatio: z.number().positive().nullable(),
  limitInputPixels: posInt,
  duplicates: z.enum(['off', 'mark', 'drop']),
});

export const modelsSchema = z.strictObject({
  captioner: z.string().min(1),
  filter: z.string().min(1),
  /** CLIPModel folder of the clip stage; null when no run of this config uses it. */
  clip: z.string().min(1).nullable(),
  device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, '"cpu" or "cuda:N"'),
  threads: nonNegInt,
  /** auto: int8 on cpu, fp32 on cuda (src/models/runtime/precision.ts). */
  precision: z.enum(['auto', 'fp32', 'fp16', 'int8']),
  /** ORT intra-op threads spin-wait: auto = only where one model stage runs (src/models/runtime/precision.ts). */
  spinning: z.enum(['auto', 'on', 'off']),
});

export const captionSchema = z.strictObject({
  k: posInt.max(64),
  keepTop: posInt.nullable(),
  method: z.enum(['nucleus', 'beam', 'greedy']),
  topP: z.number().gt(0).max(1),
  topK: nonNegInt,
  temperature: z.number().positive(),
  repetitionPenalty: z.number().positive(),
  numBeams: posInt,
  lengthPenalty: z.number(),
  maxLength: posInt,
  minLength: nonNegInt,
  prompt: z.string(),
  seed: nonNegInt,
  batchSize: posInt,
  /** The score that ranks synthetic captions for keepTop: BLIP's itc or itm, or CLIP's score. */
  selectBy: z.enum(['itc', 'itm', 'clip']),
});

export const filterSchema = z.strictObject({
  itmThreshold: prob,
  itcThreshold: z.number().min(-1).max(1).nullable(),
  selection: z.enum(['original-first', 'best-scoring', 'synthetic-first']),
  batchSize: posInt,
});

export const clipSchema = z.strictObject({
  /** Keep a text only when its CLIP score (cosine) is at least this (LAION-400M: 0.28 with ViT-B/32). */
  minScore: z.number().min(-1).max(1).nullable(),
  /**
   * DataComp's baseline: keep a text only when its CLIP score is in the top fraction of the whole
   * run's scored texts (0.3 in their best simple baseline); decided provisionally while the run
   * streams, exactly by the run's final pass (src/pipeline/top-fraction.ts).
   */
  topFraction: z.number().gt(0).max(1).nullable(),
  /** Images per CLIP vision batch; their texts go through the text tower together. */
  batchSize: posInt,
  /** Write clip-retrieval's embeddings/ folder (img_emb, text_emb .npy + metadata parquet) per shard. */
  saveEmbeddings: z.boolean(),
  /** Zero-shot labels: a file of class names, one per line (null: no labels). */
  labels: z.string().min(1).nullable(),
  /** Prompt templates for the labels: simple, imagenet (the CLIP paper's 80), or a file. */
  templates: z.string().min(1),
  /** Labels recorded per row, best first. */
  labelsTopK: posInt,
  /** Only labels at least this probable are recorded (null: the top k whatever their probability). */
  labelMinProb: prob.nullable(),
});

export const configSchema = z
  .strictObject({
    redis: redisSchema,
    input: inputSchema,
    output: outputSchema,
    shards: shardsSchema,
    pipeline: pipelineSchema,
    staging: stagingSchema,
    s3: s3Schema,
    download: downloadSchema,
    image: imageSchema,
    models: modelsSchema,
    caption: captionSchema,
    filter: filterSchema,
    clip: clipSchema,
  })
  .superRefine((c, ctx) => {
    if (c.pipeline.stages.includes('clip') && c.models.clip === null) {
      ctx.addIssue({ code: 'custom', path: ['models', 'clip'], message: 'the clip stage needs a CLIP model folder (models.clip, --clip-model)' });
    }
    if (c.caption.selectBy === 'clip' && !c.pipeline.stages.includes('clip')) {
      ctx.addIssue({ code: 'custom', path: ['caption', 'selectBy'], message: 'ranking captions by CLIP score needs the clip stage in pipeline.stages' });
    }
    if (c.clip.minScore !== null && !c.pipeline.stages.includes('clip')) {
      ctx.addIssue({ code: 'custom', path: ['clip', 'minScore'], message: 'a CLIP score threshold needs the clip stage in pipeline.stages' });
    }
    if (c.clip.topFraction !== null && !c.pipeline.stages.includes('clip')) {
      ctx.addIssue({ code: 'custom', path: ['clip', 'topFraction'], message: 'a CLIP top fraction needs the clip stage in pipeline.stages' });
    }
    if (c.clip.topFraction !== null && c.clip.saveEmbeddings) {
      // The final pass moves rows into the kept set whose embeddings were never written.
      ctx.addIssue({ code: 'custom', path: ['clip', 'saveEmbeddings'], message: 'not together with clip.topFraction (the final pass cannot add the embeddings of rows it keeps)' });
    }
    if (c.caption.keepTop !== null && c.caption.keepTop > c.caption.k) {
      ctx.addIssue({ code: 'custom', path: ['caption', 'keepTop'], message: `at most caption.k (${c.caption.k})` });
    }
    if (c.caption.minLength > c.caption.maxLength) {
      ctx.addIssue({ code: 'custom', path: ['caption', 'minLength'], message: `at most caption.maxLength (${c.caption.maxLength})` });
    }
    if (c.caption.method === 'beam' && c.caption.k > c.caption.numBeams) {
      ctx.addIssue({ code: 'custom', path: ['caption', 'k'], message: `at most caption.numBeams (${c.caption.numBeams}) with beam search` });
    }
    for (const needed of ['download', 'write'] as const) {
      if (!c.pipeline.stages.includes(needed)) {
        ctx.addIssue({ code: 'custom', path: ['pipeline', 'stages'], message: `a list that includes "${needed}" (every run downloads its rows and writes its shards)` });
      }
    }
    const order = c.pipeline.stages.map((s) => STAGES.indexOf(s));
    if (order.some((v, i) => i > 0 && v <= order[i - 1])) {
      ctx.addIssue({ code: 'custom', path: ['pipeline', 'stages'], message: `stages in pipeline order without repeats (${STAGES.join(',')})` });
    }
  });

export type CapfiltConfig = z.infer<typeof configSchema>;
