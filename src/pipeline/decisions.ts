import type { CapfiltConfig } from '../config/schema.ts';
import type { RowRecord, ScoredText } from '../core/records.ts';

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

export type FilterOptions = CapfiltConfig['filter'] & { keepTop: number | null };

export function passes(itm: number, itc: number, f: Pick<FilterOptions, 'itmThreshold' | 'itcThreshold'>): boolean {
  return itm >= f.itmThreshold && (f.itcThreshold === null || itc >= f.itcThreshold);
}

/**
 * Marks each scored text kept or not: the thresholds, and for synthetic captions the
 * "generate K, keep the top M by ITC" rule (BLIP-2's 10 → 2), applied among captions that pass.
 */
export function decideTexts(scores: ScoredText[], f: FilterOptions): ScoredText[] {
  const out = scores.map((s) => ({ ...s, kept: passes(s.itm, s.itc, f) }));
  if (f.keepTop !== null) {
    const synthetic = out.filter((s) => s.source === 'synthetic' && s.kept).sort((a, b) => b.itc - a.itc);
    for (const s of synthetic.slice(f.keepTop)) s.kept = false;
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
    const best = [...r.scores].sort(byItm)[0];
    r.reasonDetail = best ? `best ITM ${best.itm.toFixed(3)} (${best.source}) < ${f.itmThreshold}` : 'the row has no text to score';
  }
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
    const web = r.text && r.text.trim() !== '' ? r.text : null;
    r.selected = selection === 'original-first' ? web ?? r.captions[0] ?? null : r.captions[0] ?? web;
  }
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
