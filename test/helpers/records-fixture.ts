import type { RowRecord } from '../../src/core/records.ts';

/** Records in every final state a shard can hold, for writer, rethreshold and retry tests. */
export function record(i: number, over: Partial<RowRecord> = {}): RowRecord {
  return {
    key: `00007${String(i).padStart(4, '0')}`,
    rowIndex: i,
    url: `http://img.example/${i}.jpg`,
    text: `web text ${i}`,
    extra: {},
    trusted: false,
    status: 'pending',
    reason: null,
    reasonDetail: null,
    image: null,
    captions: [],
    scores: [],
    selected: null,
    fetch: null,
    ...over,
  };
}

export function imageOf(i: number, ref = `mem:${i}`) {
  return { ref, width: 32, height: 32, originalWidth: 64, originalHeight: 48, sha256: String(i).padStart(64, 'a'), format: 'jpg' };
}

export function scored(i: number, webItm: number, synItm: number, status: 'kept' | 'filtered'): RowRecord {
  return record(i, {
    status,
    reason: status === 'kept' ? 'KEPT_WEB_TEXT' : 'FILTER_NO_TEXT_KEPT',
    image: imageOf(i),
    captions: [`a synthetic caption ${i}`],
    scores: [
      { text: `web text ${i}`, source: 'web', itm: webItm, itc: 0.3, kept: webItm >= 0.5 },
      { text: `a synthetic caption ${i}`, source: 'synthetic', itm: synItm, itc: 0.25, kept: synItm >= 0.5 },
    ],
    selected: status === 'kept' ? (webItm >= 0.5 ? `web text ${i}` : `a synthetic caption ${i}`) : null,
    fetch: { httpStatus: 200, finalUrl: `http://img.example/${i}.jpg`, bytes: 1234, attempts: 1, ms: 12 },
  });
}
