import { describe, expect, it } from 'vitest';
import { countStatuses, decideRow, decideTexts, finalizeRecords, selectCaption, type FilterOptions } from '../../../src/pipeline/decisions.ts';
import type { RowRecord, ScoredText } from '../../../src/core/records.ts';

const f = (o: Partial<FilterOptions> = {}): FilterOptions => ({ itmThreshold: 0.5, itcThreshold: null, selection: 'original-first', batchSize: 8, keepTop: null, ...o });
const web = (itm: number, itc = 0.3): ScoredText => ({ text: 'web', source: 'web', itm, itc, kept: false });
const syn = (text: string, itm: number, itc = 0.3): ScoredText => ({ text, source: 'synthetic', itm, itc, kept: false });

function row(scores: ScoredText[], o: Partial<RowRecord> = {}): RowRecord {
  return { key: 'k', rowIndex: 0, url: 'http://x/a.jpg', text: 'web', extra: {}, trusted: false, status: 'pending', reason: null, reasonDetail: null, image: null, captions: [], scores, selected: null, fetch: null, ...o };
}

describe('CapFilt decisions', () => {
  it('keeps a text at ITM >= threshold (inclusive), and applies the optional ITC threshold too', () => {
    expect(decideTexts([web(0.5), web(0.4999)], f()).map((s) => s.kept)).toEqual([true, false]);
    expect(decideTexts([web(0.9, 0.1), web(0.9, 0.3)], f({ itcThreshold: 0.2 })).map((s) => s.kept)).toEqual([false, true]);
  });

  it('keeps the top M synthetic captions by ITC among those that pass', () => {
    const s = decideTexts([web(0.9), syn('a', 0.9, 0.1), syn('b', 0.9, 0.4), syn('c', 0.2, 0.9), syn('d', 0.8, 0.3)], f({ keepTop: 2 }));
    expect(s.filter((x) => x.kept).map((x) => x.text)).toEqual(['web', 'b', 'd']);
  });

  it('selects key.txt by policy', () => {
    const s = decideTexts([web(0.6), syn('a', 0.7), syn('b', 0.95)], f());
    expect(selectCaption(s, 'original-first')).toBe('web');
    expect(selectCaption(s, 'synthetic-first')).toBe('b');
    expect(selectCaption(s, 'best-scoring')).toBe('b');
    const noWeb = decideTexts([web(0.1), syn('a', 0.7)], f());
    expect(selectCaption(noWeb, 'original-first')).toBe('a');
    const onlyWeb = decideTexts([web(0.8), syn('a', 0.1)], f());
    expect(selectCaption(onlyWeb, 'synthetic-first')).toBe('web');
  });

  it('sets status and reason per row', () => {
    const cases: [ScoredText[], string, string][] = [
      [[web(0.9), syn('a', 0.1)], 'kept', 'KEPT_WEB_TEXT'],
      [[web(0.1), syn('a', 0.9)], 'kept', 'KEPT_SYNTHETIC'],
      [[web(0.9), syn('a', 0.9)], 'kept', 'KEPT_WEB_AND_SYNTHETIC'],
      [[web(0.1), syn('a', 0.2)], 'filtered', 'FILTER_NO_TEXT_KEPT'],
      [[], 'filtered', 'FILTER_NO_TEXT_KEPT'],
    ];
    for (const [scores, status, reason] of cases) {
      const r = row(scores);
      decideRow(r, f());
      expect([r.status, r.reason]).toEqual([status, reason]);
    }
    const r = row([web(0.1), syn('a', 0.2)]);
    decideRow(r, f());
    expect(r.reasonDetail).toBe('best ITM 0.200 (synthetic) < 0.5');
    expect(r.selected).toBeNull();
  });

  it('finalizes pending rows: trusted kept as given, unfiltered rows kept unscored; others untouched', () => {
    const rows = [
      row([], { trusted: true, text: 'a human caption' }),
      row([], { captions: ['synthetic one'] }),
      row([], { text: null, captions: ['only synthetic'] }),
      row([], { status: 'failed', reason: 'DOWNLOAD_TIMEOUT' }),
      row([], { status: 'filtered', reason: 'FILTER_NO_TEXT_KEPT' }),
    ];
    finalizeRecords(rows, 'original-first');
    expect(rows.map((r) => [r.status, r.reason, r.selected])).toEqual([
      ['kept', 'KEPT_TRUSTED', 'a human caption'],
      ['kept', 'KEPT_UNFILTERED', 'web'],
      ['kept', 'KEPT_UNFILTERED', 'only synthetic'],
      ['failed', 'DOWNLOAD_TIMEOUT', null],
      ['filtered', 'FILTER_NO_TEXT_KEPT', null],
    ]);
    expect(countStatuses(rows)).toEqual({ rows: 5, kept: 3, filtered: 1, failed: 1 });
  });

  describe('with CLIP scores', () => {
    const withClip = (t: ScoredText, clip: number): ScoredText => ({ ...t, clip }) as ScoredText;
    const clipOnly = (text: string, source: ScoredText['source'], clip: number): ScoredText => ({ text, source, kept: false, clip }) as unknown as ScoredText;

    it('requires every rule that applies: ITM, ITC when set, CLIP when set; names the ones that failed', () => {
      const s = decideTexts([withClip(web(0.9), 0.31), withClip(web(0.9), 0.2), withClip(web(0.3), 0.4), withClip(web(0.3, 0.1), 0.1)], f({ clipMinScore: 0.28, itcThreshold: 0.2 }));
      expect(s.map((x) => x.kept)).toEqual([true, false, false, false]);
      expect(s.map((x) => x.rejectedBy)).toEqual([[], ['clip'], ['itm'], ['itm', 'itc', 'clip']]);
    });

    it('without a CLIP threshold, CLIP scores change nothing', () => {
      expect(decideTexts([withClip(web(0.9), -0.5)], f()).map((x) => x.kept)).toEqual([true]);
    });

    it('decides CLIP-only rows (no BLIP scores) by the CLIP threshold alone', () => {
      const r = row([clipOnly('web', 'web', 0.3), clipOnly('a', 'synthetic', 0.1)]);
      decideRow(r, f({ clipMinScore: 0.28 }));
      expect(r).toMatchObject({ status: 'kept', reason: 'KEPT_WEB_TEXT', selected: 'web' });
      const dropped = row([clipOnly('web', 'web', 0.2)]);
      decideRow(dropped, f({ clipMinScore: 0.28 }));
      expect(dropped).toMatchObject({ status: 'filtered', reason: 'FILTER_NO_TEXT_KEPT', reasonDetail: 'best CLIP 0.200 (web) < 0.28' });
    });

    it('keeps a row unfiltered when no rule reads any of its scores', () => {
      const r = row([clipOnly('web', 'web', 0.1)]);
      decideRow(r, f());
      expect(r).toMatchObject({ status: 'kept', reason: 'KEPT_UNFILTERED', selected: 'web' });
    });

    it('ranks captions for keep-top by the selectBy score (BLIP-2: generate K, keep the top N by CLIP)', () => {
      const texts = [withClip(syn('a', 0.9, 0.9), 0.1), withClip(syn('b', 0.9, 0.1), 0.4), withClip(syn('c', 0.9, 0.5), 0.3)];
      expect(decideTexts(texts, f({ keepTop: 1 })).filter((x) => x.kept).map((x) => x.text)).toEqual(['a']);
      const byClip = decideTexts(texts, f({ keepTop: 2, selectBy: 'clip' }));
      expect(byClip.filter((x) => x.kept).map((x) => x.text)).toEqual(['b', 'c']);
      expect(byClip.find((x) => x.text === 'a')!.rejectedBy).toEqual(['top']);
    });

    it('applies the top-fraction threshold as one more rule (top_fraction), combined with minScore and ITM', () => {
      const s = decideTexts([withClip(web(0.9), 0.35), withClip(web(0.9), 0.3), withClip(web(0.3), 0.4), withClip(web(0.9), 0.25)], f({ clipMinScore: 0.28, clipTopThreshold: 0.32 }));
      expect(s.map((x) => x.kept)).toEqual([true, false, false, false]);
      expect(s.map((x) => x.rejectedBy)).toEqual([[], ['top_fraction'], ['itm'], ['clip', 'top_fraction']]);
      expect(decideTexts([withClip(web(0.9), 0.32)], f({ clipTopThreshold: 0.32 }))[0].kept).toBe(true);
      const r = row([clipOnly('web', 'web', 0.3)]);
      decideRow(r, f({ clipTopThreshold: 0.3125 }));
      expect(r).toMatchObject({ status: 'filtered', reasonDetail: 'best TOP_FRACTION 0.300 (web) < 0.3125' });
    });

    it('explains a filtered row by the best text\'s failed rules', () => {
      const r = row([withClip(web(0.9), 0.1), withClip(syn('a', 0.2), 0.5)]);
      decideRow(r, f({ clipMinScore: 0.28 }));
      expect(r.reasonDetail).toBe('best CLIP 0.100 (web) < 0.28');
    });
  });
});

