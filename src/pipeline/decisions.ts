import type { CapfiltConfig } from '../config/schema.ts';
import { scoreOf, type RowRecord, type ScoredText } from '../core/records.ts';

/**
 * CapFilt decisions: which texts of a row survive, which one becomes key.txt, and the row's
 * final status and reason. Pure functions over records so that the filter stage, the final
 * step before writing, and `rethreshold` apply exactly the same rules.
 *
 * Reason codes for rows that are not failures (failures carry a code from src/core/errors.ts):
 */
export const DECISION_CODES = {
  KEPT_WEB_TEXT: 'the web text passed the filter; no synthetic caption did',
  KEPT_SYNTHETIC: 'a synthetic caption passed the filter; the web text did not',
  KEPT_WEB_AND_SYNTHETIC: 'the web text and at least one synthetic caption passed the filter',
  KEPT_TRUSTED: 'human-annotated pair, merged unfiltered',
  KEPT_UNFILTERED: 'the run has no filter stage; the row is kept with its texts unscored',
  FILTER_NO_TEXT_KEPT: 'no text of the row (web or synthetic) passed the filter thresholds',
} as const;

export type DecisionCode = keyof typeof DECISION_CODES;

/**
 * Everything a decision reads: BLIP's thresholds and the key.txt policy (`filter`), keep-top and
 * its ranking score (`caption`), and CLIP's threshold (`clip.minScore`; absent = no CLIP rule).
 */
export type FilterOptions = CapfiltConfig['filter'] & {
  keepTop: number | null;
  selectBy?: CapfiltConfig['caption']['selectBy'];
  clipMinScore?: number | null;
  /**
   * The threshold of DataComp's top-fraction rule (`clip.topFraction`) for this decision: the
   * score of the run's ⌈f·N⌉-th best text (src/pipeline/top-fraction.ts); absent = no such rule.
   */
  clipTopThreshold?: number | null;
};

export function passes(itm: number, itc: number, f: Pick<FilterOptions, 'itmThreshold' | 'itcThreshold'>): boolean {
  return itm >= f.itmThreshold && (f.itcThreshold === null || itc >= f.itcThreshold);
}

/** The rules a text meets a score for, each with its threshold: a rule applies to a text that has its score. */
function rulesFor(f: FilterOptions): { rule: string; score: string; min: number }[] {
  const rules = [{ rule: 'itm', score: 'itm', min: f.itmThreshold }];
  if (f.itcThreshold !== null) rules.push({ rule: 'itc', score: 'itc', min: f.itcThreshold });
  if (f.clipMinScore !== undefined && f.clipMinScore !== null) rules.push({ rule: 'clip', score: 'clip', min: f.clipMinScore });
  if (f.clipTopThreshold !== undefined && f.clipTopThreshold !== null) rules.push({ rule: 'top_fraction', score: 'clip', min: f.clipTopThreshold });
  return rules;
}

/** The rules a text fails (all rules must pass); empty when it passes every rule that applies. */
export function rejectedBy(s: ScoredText, f: FilterOptions): string[] {
  return rulesFor(f).filter(({ score, min }) => {
    const v = scoreOf(s, score);
    return v !== undefined && !(v >= min);
  }).map(({ rule }) => rule);
}

/** Whether any rule applies to the text (a text with no score of any rule is not decided here). */
function judged(s: ScoredText, f: FilterOptions): boolean {
  return rulesFor(f).some(({ score }) => scoreOf(s, score) !== undefined);
}

/**
 * Marks each scored text kept or not: every rule that applies must pass (BLIP ITM, ITC when set,
 * CLIP score when set, CLIP top fraction when set), and for synthetic captions "generate K, keep the top M" (BLIP-2's 10 → 2)
 * ranked by `selectBy` (default ITC), among captions that pass. Each text records the rules that
 * rejected it (`rejectedBy`, plus `top` when keep-top dropped it).
 */
export function decideTexts(scores: ScoredText[], f: FilterOptions): ScoredText[] {
  const out = scores.map((s) => {
    const failed = rejectedBy(s, f);
    return { ...s, kept: judged(s, f) && failed.length === 0, rejectedBy: failed };
  });
  if (f.keepTop !== null) {
    const key = f.selectBy ?? 'itc';
    const rank = (s: ScoredText) => scoreOf(s, key) ?? -Infinity;
    const synthetic = out.filter((s) => s.source === 'synthetic' && s.kept).sort((a, b) => rank(b) - rank(a));
    for (const s of synthetic.slice(f.keepTop)) {
      s.kept = false;
      s.rejectedBy = [...s.rejectedBy, 'top'];
    }
  }
  return out;
}

const byItm = (a: ScoredText, b: ScoredText) => b.itm - a.itm;

/** The caption for key.txt among the kept texts, by the configured policy. */
export function selectCaption(scores: ScoredText[], policy: FilterOptions['selection']): string | null {
  const kept = scores.filter((s) => s.kept);
  const web = kept.find((s) => s.source === 'web');
  const synthetic = kept.filter((s) => s.source === 'synthetic').sort(byItm);
  switch (policy) {
    case 'original-first':
      return web?.text ?? synthetic[0]?.text ?? null;
    case 'synthetic-first':
      return synthetic[0]?.text ?? web?.text ?? null;
    case 'best-scoring':
      return [...kept].sort(byItm)[0]?.text ?? null;
  }
}

/** Applies the decisions to a scored row (status, reason, selected). */
export function decideRow(r: RowRecord, f: FilterOptions): void {
  r.scores = decideTexts(r.scores, f);
  if (r.scores.length && !r.scores.some((s) => judged(s, f))) {
    // Scored, but by no score a rule reads (CLIP scores with no CLIP threshold): not filtered.
    r.status = 'kept';
    r.reason = 'KEPT_UNFILTERED';
    r.reasonDetail = null;
    r.selected = unfilteredCaption(r, f.selection);
    return;
  }
  const webKept = r.scores.some((s) => s.source === 'web' && s.kept);
  const synKept = r.scores.some((s) => s.source === 'synthetic' && s.kept);
  r.selected = selectCaption(r.scores, f.selection);
  if (webKept || synKept) {
    r.status = 'kept';
    r.reason = webKept && synKept ? 'KEPT_WEB_AND_SYNTHETIC' : webKept ? 'KEPT_WEB_TEXT' : 'KEPT_SYNTHETIC';
    r.reasonDetail = null;
  } else {
    r.status = 'filtered';
    r.reason = 'FILTER_NO_TEXT_KEPT';
    r.reasonDetail = filteredDetail(r.scores, f);
  }
}

/** Why no text passed: the best text by ITM (by CLIP score without BLIP) and the rules it failed. */
function filteredDetail(scores: ScoredText[], f: FilterOptions): string {
  if (!scores.length) return 'the row has no text to score';
  const key = scores.some((s) => scoreOf(s, 'itm') !== undefined) ? 'itm' : 'clip';
  const best = [...scores].sort((a, b) => (scoreOf(b, key) ?? -Infinity) - (scoreOf(a, key) ?? -Infinity))[0];
  const rules = rulesFor(f);
  const failed = (best.rejectedBy ?? rejectedBy(best, f)).filter((x) => x !== 'top').map((rule) => {
    const r = rules.find((x) => x.rule === rule)!;
    return { name: rule.toUpperCase(), value: scoreOf(best, r.score)!.toFixed(3), min: r.min };
  });
  if (!failed.length) return `best ${key.toUpperCase()} ${(scoreOf(best, key) ?? NaN).toFixed(3)} (${best.source}) passed but keep-top dropped it`;
  const [first, ...rest] = failed;
  return [`best ${first.name} ${first.value} (${best.source}) < ${first.min}`, ...rest.map((x) => `${x.name} ${x.value} < ${x.min}`)].join(', ');
}

/**
 * Settles every row still pending before the shard is written: trusted rows are kept as given;
 * rows that were not filtered (no filter stage in the run) are kept unscored with the web text,
 * or the first synthetic caption when there is no web text / the policy prefers synthetic.
 */
export function finalizeRecords(records: RowRecord[], selection: FilterOptions['selection']): void {
  for (const r of records) {
    if (r.status !== 'pending') continue;
    if (r.trusted) {
      r.status = 'kept';
      r.reason = 'KEPT_TRUSTED';
      r.selected = r.text;
      continue;
    }
    r.status = 'kept';
    r.reason = 'KEPT_UNFILTERED';
    r.selected = unfilteredCaption(r, selection);
  }
}

function unfilteredCaption(r: RowRecord, selection: FilterOptions['selection']): string | null {
  const web = r.text && r.text.trim() !== '' ? r.text : null;
  return selection === 'original-first' ? web ?? r.captions[0] ?? null : r.captions[0] ?? web;
}

export function countStatuses(records: RowRecord[]): { rows: number; kept: number; filtered: number; failed: number } {
  const c = { rows: records.length, kept: 0, filtered: 0, failed: 0 };
  for (const r of records) {
    if (r.status === 'kept') c.kept++;
    else if (r.status === 'filtered') c.filtered++;
    else if (r.status === 'failed') c.failed++;
  }
  return c;
}
