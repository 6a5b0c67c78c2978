import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { CapfiltError } from '../core/errors.ts';
import { configSchema, type CapfiltConfig } from './schema.ts';

/**
 * Builds a run's configuration: config/default.yaml, then the user file, then the environment
 * (REDIS_URL and CAPFILT_<SECTION>_<OPTION>), then command-line overrides; validated once.
 * Every leaf remembers where its value came from so that an error can say "from env X" or
 * "from --flag", and so that callers can ask whether an option was set explicitly (the private
 * redis-server is started only when `redis.url` was not).
 */
export const DEFAULT_CONFIG_FILE = fileURLToPath(new URL('../../config/default.yaml', import.meta.url));

export interface Override {
  /** Dotted option path, e.g. "pipeline.maxInFlightShards". */
  path: string;
  /** A string (from argv, coerced like an env value) or an already typed value. */
  value: unknown;
  /** Where it came from, for error messages: "--shard-rows", "--set". */
  source: string;
}

export interface ConfigSources {
  /** User config file (YAML or JSON). */
  file?: string | null;
  env?: Record<string, string | undefined>;
  overrides?: Override[];
}

export interface LoadedConfig {
  config: CapfiltConfig;
  /** Where each option's value came from: "default", "file <f>", "env <NAME>", "<flag>". */
  sourceOf(path: string): string;
  /** True when the option was set by the file, the environment or a flag. */
  isExplicit(path: string): boolean;
}

type Tree = Record<string, unknown>;

const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

function readYaml(file: string, what: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CapfiltError('CONFIG_FILE_UNREADABLE', `${what} ${file} cannot be read: ${(e as Error).message}`, { file });
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (e) {
    throw new CapfiltError('CONFIG_FILE_UNREADABLE', `${what} ${file} is not valid YAML/JSON: ${(e as Error).message}`, { file });
  }
  if (parsed === null || parsed === undefined) return {};
  if (!isTree(parsed)) {
    throw new CapfiltError('CONFIG_FILE_UNREADABLE', `${what} ${file} must hold a mapping of sections (redis:, input:, ...), got ${Array.isArray(parsed) ? 'a list' : typeof parsed}`, { file });
  }
  return parsed;
}

/** Dotted paths of every leaf (scalar or list) of a tree. */
export function leafPaths(tree: Tree, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(tree)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (isTree(v)) out.push(...leafPaths(v, p));
    else out.push(p);
  }
  return out;
}

export function getPath(tree: unknown, path: string | readonly PropertyKey[]): unknown {
  const parts = typeof path === 'string' ? path.split('.') : path;
  let cur: unknown = tree;
  for (const p of parts) {
    if (!isTree(cur) && !Array.isArray(cur)) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p as string];
  }
  return cur;
}

function setPath(tree: Tree, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = tree;
  for (const p of parts.slice(0, -1)) {
    if (!isTree(cur[p])) cur[p] = {};
    cur = cur[p] as Tree;
  }
  cur[parts[parts.length - 1]] = value;
}

/** "pipeline.maxInFlightShards" → "CAPFILT_PIPELINE_MAX_IN_FLIGHT_SHARDS". */
export function envNameOf(path: string): string {
  return `CAPFILT_${path.split('.').map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;
}

/**
 * Turns a string from the environment or argv into the type the default has, so that
 * "8" becomes 8 and "a,b" a list. A string that does not convert stays a string and the
 * schema then reports it with the option's name.
 */
export function coerce(raw: unknown, like: unknown): unknown {
  if (typeof raw !== 'string') return raw;
  const s = raw.trim();
  if (Array.isArray(like)) return s === '' ? [] : s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (s === 'null' && typeof like !== 'string') return null;
  if (typeof like === 'number' || like === null) {
    if (s !== '' && Number.isFinite(Number(s))) return Number(s);
    if (like === null && /^(true|false)$/i.test(s)) return s.toLowerCase() === 'true';
    return raw;
  }
  if (typeof like === 'boolean') {
    if (/^(true|1|yes|on)$/i.test(s)) return true;
    if (/^(false|0|no|off)$/i.test(s)) return false;
    return raw;
  }
  return raw;
}

function describeGiven(v: unknown): string {
  if (v === undefined) return 'nothing';
  const j = JSON.stringify(v);
  return j.length > 80 ? `${j.slice(0, 77)}...` : j;
}

function expectedText(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.expected === 'int' ? 'an integer' : `a ${issue.expected}`;
    case 'too_small': {
      const bound = Number(issue.minimum);
      if (issue.origin === 'array') return `a list with at least ${bound} item${bound === 1 ? '' : 's'}`;
      if (issue.origin === 'string') return 'a non-empty string';
      return `a number ${issue.inclusive ? '>=' : '>'} ${bound}`;
    }
    case 'too_big':
      return `a number ${issue.inclusive ? '<=' : '<'} ${Number(issue.maximum)}`;
    case 'invalid_value':
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_format':
      return issue.format === 'regex' ? issue.message : `a ${issue.format}`;
    case 'not_multiple_of':
      return `a multiple of ${Number(issue.divisor)}`;
    default:
      return issue.message;
  }
}

function formatIssue(issue: z.core.$ZodIssue, merged: Tree, sourceOf: (p: string) => string): string {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (path ? `${path}.${k}` : k));
    const where = keys.map(sourceOf).filter((s, i, a) => a.indexOf(s) === i).join(', ');
    return `unknown option${keys.length > 1 ? 's' : ''} ${keys.join(', ')} (from ${where})`;
  }
  const given = getPath(merged, issue.path as PropertyKey[]);
  return `option ${path || '(root)'}: expected ${expectedText(issue)}, got ${describeGiven(given)} (from ${sourceOf(path)})`;
}

export function loadConfig(sources: ConfigSources = {}): LoadedConfig {
  const defaults = readYaml(DEFAULT_CONFIG_FILE, 'default configuration');
  const merged: Tree = structuredClone(defaults);
  const origin = new Map<string, string>();
  const known = new Set(leafPaths(defaults));

  const apply = (path: string, value: unknown, source: string) => {
    setPath(merged, path, value);
    origin.set(path, source);
  };

  if (sources.file) {
    const user = readYaml(sources.file, 'configuration file');
    const walk = (tree: Tree, prefix: string) => {
      for (const [k, v] of Object.entries(tree)) {
        const p = prefix ? `${prefix}.${k}` : k;
        if (isTree(v) && !known.has(p)) walk(v, p);
        else apply(p, v, `file ${sources.file}`);
      }
    };
    walk(user, '');
  }

  const env = sources.env ?? {};
  if (env.REDIS_URL !== undefined && env.REDIS_URL !== '') apply('redis.url', env.REDIS_URL, 'env REDIS_URL');
  for (const path of known) {
    const name = envNameOf(path);
    const raw = env[name];
    if (raw !== undefined) apply(path, coerce(raw, getPath(defaults, path)), `env ${name}`);
  }

  for (const o of sources.overrides ?? []) {
    if (!known.has(o.path)) {
      throw new CapfiltError('CONFIG_INVALID', `unknown option ${o.path} (from ${o.source}); options are listed in config/default.yaml`, { option: o.path });
    }
    apply(o.path, coerce(o.value, getPath(defaults, o.path)), o.source);
  }

  const sourceOf = (path: string): string => {
    for (let p = path; p; p = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '') {
      const s = origin.get(p);
      if (s) return s;
    }
    return 'default';
  };

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((i) => formatIssue(i, merged, sourceOf));
    throw new CapfiltError('CONFIG_INVALID', lines.join('; '), { issues: lines });
  }
  return {
    config: result.data,
    sourceOf,
    isExplicit: (path) => sourceOf(path) !== 'default',
  };
}

/** Parses `--set a.b=value` arguments. */
export function parseSetArgs(args: string[]): Override[] {
  return args.map((a) => {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new CapfiltError('CLI_USAGE', `--set expects option=value (e.g. --set filter.itmThreshold=0.6), got "${a}"`);
    return { path: a.slice(0, eq).trim(), value: a.slice(eq + 1), source: `--set ${a.slice(0, eq).trim()}` };
  });
}
