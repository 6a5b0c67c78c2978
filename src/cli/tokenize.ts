import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { loadTokenizer, type BlipTokenizer } from '../models/blip/tokenizer.ts';
import { loadClipTokenizer } from '../models/clip/tokenizer.ts';
import { numberOption } from './model-options.ts';

interface Tokenized {
  text: string;
  /** With the model's special tokens (CLIP: sot … eot; BLIP: [CLS] … [SEP]). */
  ids: number[];
  tokens: string[];
  length: number;
  truncated: boolean;
}

interface TextTokenizer {
  kind: 'clip' | 'blip';
  dir: string;
  tokenize(text: string, contextLength: number | undefined): Tokenized;
}

type Json = Record<string, unknown>;

function readJsonFile(file: string): Json | undefined {
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: not valid JSON (${(e as Error).message})`, { file }, { cause: e });
  }
  return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Json) : undefined;
}

function tokenizerModelType(dir: string): unknown {
  const file = join(dir, 'tokenizer.json');
  if (!existsSync(file)) return undefined;
  try {
    return ((JSON.parse(readFileSync(file, 'utf8')) as Json).model as Json | undefined)?.type;
  } catch {
    // The tokenizer loader reports a broken tokenizer.json with its coded error.
    return undefined;
  }
}

function clipTokenizer(dir: string): TextTokenizer {
  const tok = loadClipTokenizer(dir);
  return {
    kind: 'clip',
    dir,
    tokenize(text, contextLength) {
      const batch = tok.encodeBatch([text], { contextLength });
      const ids = batch.ids[0];
      return { text, ids, tokens: ids.map((id) => tok.idToToken(id) ?? `<${id}>`), length: ids.length, truncated: batch.truncated[0] };
    },
  };
}

/**
 * BlipTokenizer maps tokens to ids only; the names for display come from the folder's
 * vocabulary (tokenizer.json or vocab.txt) and special-token files, checked against it.
 */
function blipTokenNames(dir: string, tok: BlipTokenizer): (id: number) => string {
  const names = new Map<number, string>();
  const add = (token: unknown): void => {
    if (typeof token === 'object' && token !== null) token = (token as Json).content;
    if (typeof token !== 'string') return;
    const id = tok.tokenToId(token);
    if (id !== undefined && !names.has(id)) names.set(id, token);
  };
  const json = readJsonFile(join(dir, 'tokenizer.json'));
  if (json) {
    for (const t of Array.isArray(json.added_tokens) ? json.added_tokens : []) add(t);
    for (const t of Object.keys(((json.model as Json | undefined)?.vocab as Json | undefined) ?? {})) add(t);
  } else if (existsSync(join(dir, 'vocab.txt'))) {
    for (const t of readFileSync(join(dir, 'vocab.txt'), 'utf8').split('\n')) add(t);
  }
  for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
    const cfg = readJsonFile(join(dir, name)) ?? {};
    for (const [key, value] of Object.entries(cfg)) {
      if (key.endsWith('_token')) add(value);
      if (key === 'additional_special_tokens' && Array.isArray(value)) value.forEach(add);
    }
  }
  for (const t of Object.keys(readJsonFile(join(dir, 'added_tokens.json')) ?? {})) add(t);
  ['[DEC]', '[ENC]'].forEach(add);
  return (id) => names.get(id) ?? `<${id}>`;
}

function blipTokenizer(dir: string): TextTokenizer {
  const tok = loadTokenizer(dir);
  const name = blipTokenNames(dir, tok);
  const max = readJsonFile(join(dir, 'tokenizer_config.json'))?.model_max_length;
  // transformers writes int(1e30) for "no limit".
  const defaultLength = typeof max === 'number' && Number.isInteger(max) && max > 0 && max <= 1_000_000 ? max : undefined;
  return {
    kind: 'blip',
    dir,
    tokenize(text, contextLength) {
      const limit = contextLength ?? defaultLength;
      const full = tok.encode(text);
      const ids = limit === undefined || full.length <= limit ? full : tok.encodeBatch([text], { maxLength: limit }).ids[0];
      return { text, ids, tokens: ids.map(name), length: ids.length, truncated: ids.length < full.length };
    },
  };
}

const CLIP_TYPES = ['clip', 'clip_text_model'];
const BLIP_TYPES = ['blip', 'blip_text_model'];

/**
 * The tokenizer of a model folder: config.json's model_type decides; without one, the
 * tokenizer files do (vocab.json + merges.txt or a BPE tokenizer.json: CLIP; vocab.txt or a
 * WordPiece tokenizer.json: BLIP). A BLIP folder holding captioner/ and filter/ uses the
 * filter's tokenizer (the captioner's when there is no filter).
 */
export function textTokenizerFor(dir: string): TextTokenizer {
  const modelType = readJsonFile(join(dir, 'config.json'))?.model_type;
  if (typeof modelType === 'string' && CLIP_TYPES.includes(modelType)) return clipTokenizer(dir);
  if (typeof modelType === 'string' && BLIP_TYPES.includes(modelType)) return blipTokenizer(dir);
  const tokenizerType = tokenizerModelType(dir);
  if ((existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'))) || tokenizerType === 'BPE') return clipTokenizer(dir);
  if (existsSync(join(dir, 'vocab.txt')) || tokenizerType === 'WordPiece') return blipTokenizer(dir);
  if (modelType === undefined) {
    for (const role of ['filter', 'captioner']) {
      if (existsSync(join(dir, role, 'config.json'))) return textTokenizerFor(join(dir, role));
    }
  }
  const what = modelType === undefined ? 'no config.json model_type and no tokenizer files' : `model_type ${JSON.stringify(modelType)} is neither CLIP nor BLIP`;
  throw new CapfiltError('MODEL_DIR_INVALID', `${dir}: ${what}`, { dir });
}

function table(t: Tokenized): string {
  const head = `${JSON.stringify(t.text)}: ${t.length} tokens${t.truncated ? ' (truncated)' : ''}\n`;
  const idWidth = Math.max(2, ...t.ids.map((id) => String(id).length));
  const posWidth = String(Math.max(0, t.length - 1)).length;
  const rows = t.ids.map((id, i) => `  ${String(i).padStart(posWidth)}  ${String(id).padStart(idWidth)}  ${JSON.stringify(t.tokens[i])}\n`);
  return head + rows.join('');
}

export function registerTokenize(program: Command): void {
  program
    .command('tokenize')
    .description('show the token ids a CLIP or BLIP model folder gives texts (special tokens included)')
    .requiredOption('--model <dir>', 'model folder: CLIP (vocab.json + merges.txt or tokenizer.json) or BLIP')
    .option('--json', 'print one JSON object per text and line: text, ids, tokens, length, truncated')
    .option('--context-length <n>', 'truncate to n tokens, special tokens included (default: the model\'s, CLIP 77)')
    .argument('<text...>', 'texts to tokenize')
    .action((texts: string[], o: { model: string; json?: boolean; contextLength?: string }) => {
      const contextLength = o.contextLength === undefined ? undefined : numberOption('context-length', o.contextLength, 1, 1_000_000, true);
      const tok = textTokenizerFor(resolve(o.model));
      for (const text of texts) {
        const t = tok.tokenize(text, contextLength);
        process.stdout.write(o.json ? `${JSON.stringify(t)}\n` : table(t));
      }
    });
}
