/**
 * BLIP's tokenizer: BERT WordPiece with `[DEC]` as bos and `[ENC]` as an extra special token.
 *
 * Loads the folder's `tokenizer.json` with @huggingface/tokenizers. Older Hugging Face folders
 * ship only `vocab.txt` + `tokenizer_config.json` (+ `special_tokens_map.json`, `added_tokens.json`);
 * for those the tokenizer.json that `transformers` would derive (its BertConverter) is built in
 * memory. Special ids are looked up by token string from the files, never assumed.
 *
 * @huggingface/tokenizers has no batch API: `encodeBatch` truncates and pads itself, the way
 * `tokenizer(texts, padding=..., truncation=True, max_length=...)` does.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { CapfiltError } from '../../core/errors.ts';
import type { SpecialIds } from '../runtime/generation/types.ts';

export interface TokenizerSpecialIds extends SpecialIds {
  unk: number;
  /** `[ENC]`; null when the folder does not define it (the HF filter never uses it). */
  enc: number | null;
}

export interface BatchEncoding {
  /** One row per text, all of length `length`, right-padded with `pad`. */
  ids: number[][];
  /** 1 for real tokens, 0 for padding. */
  attentionMask: number[][];
  length: number;
}

export interface BatchOptions {
  /** Truncate each text to this many tokens, special tokens included. */
  maxLength?: number;
  /** 'longest' pads to the longest row (HF `padding=True`); 'max_length' pads to maxLength. */
  padding?: 'longest' | 'max_length';
}

export interface BlipTokenizer {
  readonly special: TokenizerSpecialIds;
  /** Vocabulary size including added tokens (highest id + 1). */
  readonly vocabSize: number;
  /** Ids with the template's special tokens (`[CLS] … [SEP]`). */
  encode(text: string): number[];
  /** Ids without special tokens. */
  encodePlain(text: string): number[];
  encodeBatch(texts: string[], options?: BatchOptions): BatchEncoding;
  /**
   * Text of `ids` with control tokens ([PAD], [CLS], [SEP], [DEC], [ENC], [MASK]...) removed.
   * `[UNK]` is kept as the literal `[UNK]`: the library's skip_special_tokens would delete it
   * silently, turning "a [UNK] on a beach" into "a on a beach".
   */
  decode(ids: number[]): string;
  tokenToId(token: string): number | undefined;
}

type Json = Record<string, unknown>;

/** Special-token roles in the order transformers appends missing ones to the vocabulary. */
const ROLES = ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'] as const;
type Role = (typeof ROLES)[number];
const DEFAULT_NAMES: Partial<Record<Role, string>> = { bos: '[DEC]', unk: '[UNK]', sep: '[SEP]', pad: '[PAD]', cls: '[CLS]', mask: '[MASK]' };
const DEFAULT_ADDITIONAL = ['[ENC]'];
const BERT_CORE: readonly Role[] = ['unk', 'sep', 'pad', 'cls'];

export function loadTokenizer(dir: string): BlipTokenizer {
  const tokenizerConfig = readJson(dir, 'tokenizer_config.json', false) ?? {};
  const specialMap = readJson(dir, 'special_tokens_map.json', false) ?? {};
  const names = specialNames(tokenizerConfig, specialMap);
  const jsonPath = join(dir, 'tokenizer.json');
  let tokenizerJson: Json;
  let source: string;
  if (existsSync(jsonPath)) {
    tokenizerJson = readJson(dir, 'tokenizer.json', true)!;
    source = jsonPath;
  } else if (existsSync(join(dir, 'vocab.txt'))) {
    tokenizerJson = bertTokenizerJson(dir, tokenizerConfig, names);
    source = join(dir, 'vocab.txt');
  } else {
    throw new CapfiltError('TOKENIZER_INVALID', `${dir}: neither tokenizer.json nor vocab.txt found`, { dir });
  }
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tokenizerJson, { ...tokenizerConfig, additional_special_tokens: names.additional });
  } catch (e) {
    throw new CapfiltError('TOKENIZER_INVALID', `${source}: ${(e as Error).message}`, { file: source }, { cause: e });
  }
  return new HfBlipTokenizer(tok, source, names);
}

interface SpecialNames {
  roles: Partial<Record<Role, string>>;
  additional: string[];
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

/** special_tokens_map.json overrides tokenizer_config.json, which overrides BLIP's defaults. */
function specialNames(config: Json, map: Json): SpecialNames {
  const roles: Partial<Record<Role, string>> = { ...DEFAULT_NAMES };
  for (const src of [config, map]) {
    for (const role of ROLES) {
      const name = tokenName(src[`${role}_token`]);
      if (name !== undefined) roles[role] = name;
    }
  }
  const extra = map.additional_special_tokens ?? config.additional_special_tokens;
  const additional = Array.isArray(extra) ? extra.map(tokenName).filter((x): x is string => x !== undefined) : DEFAULT_ADDITIONAL;
  return { roles, additional };
}

function readJson(dir: string, name: string, required: boolean): Json | undefined {
  const file = join(dir, name);
  if (!existsSync(file)) {
    if (required) throw new CapfiltError('TOKENIZER_INVALID', `${file} is missing`, { file });
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CapfiltError('TOKENIZER_INVALID', `${file} is not valid JSON: ${(e as Error).message}`, { file }, { cause: e });
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CapfiltError('TOKENIZER_INVALID', `${file} is not a JSON object`, { file });
  return parsed as Json;
}

/**
 * The tokenizer.json transformers' BertConverter produces for a BertTokenizer folder: special
 * tokens absent from vocab.txt get ids after it, from `added_tokens_decoder`/`added_tokens.json`
 * when present, else in transformers' order (bos, eos, unk, sep, pad, cls, mask, additional).
 */
function bertTokenizerJson(dir: string, config: Json, names: SpecialNames): Json {
  const file = join(dir, 'vocab.txt');
  const lines = readFileSync(file, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new CapfiltError('TOKENIZER_INVALID', `${file} is empty`, { file });
  const vocab: Record<string, number> = Object.create(null);
  lines.forEach((t, i) => { vocab[t] = i; });
  const ids = new Map<string, number>(Object.entries(vocab));
  let next = lines.length;
  const explicit = new Map<string, number>();
  const decoder = config.added_tokens_decoder;
  if (decoder && typeof decoder === 'object') {
    for (const [id, t] of Object.entries(decoder as Json)) {
      const name = tokenName(t);
      if (name !== undefined && /^\d+$/.test(id)) explicit.set(name, Number(id));
    }
  }
  for (const [name, id] of Object.entries(readJson(dir, 'added_tokens.json', false) ?? {})) {
    if (typeof id === 'number') explicit.set(name, id);
  }
  const specials = [...ROLES.map((r) => names.roles[r]).filter((x): x is string => x !== undefined), ...names.additional];
  for (const name of specials) {
    if (ids.has(name)) continue;
    const role = ROLES.find((r) => names.roles[r] === name);
    // BERT's own structural tokens must come with the vocabulary; only BLIP's extras are appended.
    if (role && BERT_CORE.includes(role) && !explicit.has(name)) {
      throw new CapfiltError('TOKENIZER_INVALID', `${file}: ${role} token ${name} is not in the vocabulary`, { file, role });
    }
    const id = explicit.get(name) ?? next;
    ids.set(name, id);
    next = Math.max(next, id + 1);
  }
  const unk = names.roles.unk!;
  const cls = names.roles.cls!;
  const sep = names.roles.sep!;
  const added = [...new Set(specials)].map((content) => ({
    id: ids.get(content)!, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const lowercase = config.do_lower_case === undefined ? true : Boolean(config.do_lower_case);
  return {
    version: '1.0',
    added_tokens: added.sort((a, b) => a.id - b.id),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: config.tokenize_chinese_chars === undefined ? true : Boolean(config.tokenize_chinese_chars),
      strip_accents: config.strip_accents ?? null,
      lowercase,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } }],
      pair: [
        { SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: sep, type_id: 1 } },
      ],
      special_tokens: {
        [cls]: { id: cls, ids: [ids.get(cls)], tokens: [cls] },
        [sep]: { id: sep, ids: [ids.get(sep)], tokens: [sep] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: unk, continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

class HfBlipTokenizer implements BlipTokenizer {
  readonly special: TokenizerSpecialIds;
  readonly vocabSize: number;
  private readonly control: Set<number>;

  constructor(private readonly tok: Tokenizer, private readonly source: string, names: SpecialNames) {
    const id = (role: string, name: string | undefined): number => {
      const v = name === undefined ? undefined : tok.token_to_id(name);
      if (v === undefined) throw new CapfiltError('TOKENIZER_INVALID', `${source}: ${role} token ${name ?? '(unnamed)'} is not in the vocabulary`, { file: source, role });
      return v;
    };
    const sep = id('sep', names.roles.sep);
    const encName = names.additional.includes('[ENC]') ? '[ENC]' : undefined;
    this.special = {
      bos: id('bos', names.roles.bos),
      sep,
      // BLIP's generate stops on the separator: sep doubles as eos.
      eos: sep,
      pad: id('pad', names.roles.pad),
      cls: id('cls', names.roles.cls),
      unk: id('unk', names.roles.unk),
      enc: encName === undefined ? null : tok.token_to_id(encName) ?? null,
    };
    let max = -1;
    for (const v of tok.get_vocab(true).values()) max = Math.max(max, v);
    this.vocabSize = max + 1;
    this.control = new Set(
      [...tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([i]) => i).filter((i) => i !== this.special.unk),
    );
    for (const v of Object.values(this.special)) if (v !== null && v !== this.special.unk) this.control.add(v);
  }

  encode(text: string): number[] {
    return this.tok.encode(text).ids;
  }

  encodePlain(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  encodeBatch(texts: string[], options: BatchOptions = {}): BatchEncoding {
    const { maxLength, padding = 'longest' } = options;
    if (padding === 'max_length' && maxLength === undefined) {
      throw new CapfiltError('CONFIG_INVALID', 'encodeBatch: padding "max_length" needs maxLength');
    }
    const rows = texts.map((t) => (maxLength === undefined ? this.encode(t) : this.truncated(t, maxLength)));
    const length = padding === 'max_length' ? maxLength! : Math.max(0, ...rows.map((r) => r.length));
    return {
      ids: rows.map((r) => [...r, ...new Array<number>(length - r.length).fill(this.special.pad)]),
      attentionMask: rows.map((r) => [...new Array<number>(r.length).fill(1), ...new Array<number>(length - r.length).fill(0)]),
      length,
    };
  }

  decode(ids: number[]): string {
    const kept = ids.filter((i) => !this.control.has(i));
    if (kept.length === 0) return '';
    return this.tok.decode(kept, { skip_special_tokens: false });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** Like HF truncation: the template's special tokens stay, the text is cut to fit. */
  private truncated(text: string, maxLength: number): number[] {
    const full = this.encode(text);
    if (full.length <= maxLength) return full;
    const plain = this.encodePlain(text);
    const extra = full.length - plain.length;
    let prefix = 0;
    while (prefix <= extra && !startsWithAt(full, plain, prefix)) prefix++;
    if (prefix > extra || maxLength < extra) {
      throw new CapfiltError('TOKENIZER_INVALID', `${this.source}: cannot truncate to ${maxLength} tokens (template adds ${extra})`, { file: this.source });
    }
    return [...full.slice(0, prefix), ...plain.slice(0, maxLength - extra), ...full.slice(prefix + plain.length)];
  }
}

function startsWithAt(full: number[], part: number[], at: number): boolean {
  for (let i = 0; i < part.length; i++) if (full[at + i] !== part[i]) return false;
  return true;
}
