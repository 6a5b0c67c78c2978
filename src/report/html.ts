import type { GalleryItem, ReportData, ScoreHistogram } from './collect.ts';

/**
 * report.html: one self-contained page (inline CSS, inline SVG charts, thumbnails as data: URIs,
 * a few lines of inline script for the gallery tabs; a Content-Security-Policy that allows no
 * network fetch at all), so it can be mailed, archived next to the data and opened offline.
 */
const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const pct = (n: number, d: number) => (d > 0 ? `${((100 * n) / d).toFixed(1)}%` : '–');
const fmt = (n: number) => n.toLocaleString('en-US');

const SOURCE_COLOR: Record<string, string> = { web: '#2f6fdf', synthetic: '#e0762b', trusted: '#2a9d5c' };
const colorOf = (s: string) => SOURCE_COLOR[s] ?? '#777';

const RULE_HELP: Record<string, string> = {
  itm: 'BLIP ITM P(match) below filter.itmThreshold',
  itc: 'BLIP ITC cosine below filter.itcThreshold',
  clip: 'CLIP score below clip.minScore',
  top: 'not among the best caption.keepTop synthetic captions',
  top_fraction: 'CLIP score outside the run\'s clip.topFraction',
};

const SCORE_TITLE: Record<string, string> = { itm: 'BLIP ITM P(match)', itc: 'BLIP ITC cosine', clip: 'CLIP score (cosine)' };

export function renderReport(d: ReportData): string {
  const t = d.totals;
  const title = `capfilt report${d.run.runId ? ` · run ${d.run.runId}` : ''}`;
  const sections = [
    header(d),
    totals(d),
    rules(d),
    reasons(d),
    histograms(d),
    d.labels ? labels(d.labels, t.rows) : '',
    failures(d),
    gallery(d.gallery),
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
${sections.join('\n')}
<footer>Built ${esc(d.generatedAt)} from ${esc(d.out)} by <code>capfilt report</code>. Self-contained: no request leaves this page.</footer>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

function header(d: ReportData): string {
  const r = d.run;
  const facts: Array<[string, string]> = [
    ['status', r.status ?? 'unknown (no run.json)'],
    ['stages', r.stages.join(' → ') || '–'],
    ['input', r.input ?? '–'],
    ['output', d.out],
    ['time', r.seconds !== null ? `${r.seconds.toFixed(1)} s${r.rowsPerSec !== null ? ` · ${r.rowsPerSec.toFixed(1)} rows/s` : ''}` : '–'],
    ['finished', r.finishedAt ?? '–'],
  ];
  const reconciled = r.reconciled === false ? '<p class="warn">Totals do not reconcile (see run.json).</p>' : '';
  return `<header><h1>capfilt report</h1><p class="sub">${r.runId ? `run <code>${esc(r.runId)}</code>` : 'output folder'}</p>
<dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>${reconciled}</header>`;
}

function totals(d: ReportData): string {
  const t = d.totals;
  const card = (label: string, n: number, cls: string, sub: string) => `<div class="card ${cls}"><div class="n">${fmt(n)}</div><div class="l">${esc(label)}</div><div class="s">${esc(sub)}</div></div>`;
  const bar = t.rows
    ? `<div class="stack" title="kept / filtered / failed">${(['kept', 'filtered', 'failed'] as const).map((k) => `<span class="${k}" style="width:${(100 * t[k]) / t.rows}%"></span>`).join('')}</div>`
    : '';
  const texts = Object.entries(d.texts).map(([src, c]) => `<li><span class="dot" style="background:${colorOf(src)}"></span>${esc(src)} texts: ${fmt(c.kept)} of ${fmt(c.scored)} kept (${pct(c.kept, c.scored)})</li>`).join('');
  const i2d = d.img2dataset;
  return `<section id="totals"><h2>Totals</h2><div class="cards">
${card('rows', t.rows, 'rows', `${d.shards} shard${d.shards === 1 ? '' : 's'}`)}
${card('kept', t.kept, 'kept', pct(t.kept, t.rows))}
${card('filtered', t.filtered, 'filtered', pct(t.filtered, t.rows))}
${card('failed', t.failed, 'failed', pct(t.failed, t.rows))}
</div>${bar}
<ul class="plain">${texts}<li>img2dataset counters: ${fmt(i2d.successes)} successes, ${fmt(i2d.failedToDownload)} failed_to_download, ${fmt(i2d.failedToResize)} failed_to_resize</li></ul></section>`;
}

function table(head: string[], rows: string[][], cls = ''): string {
  return `<table class="${cls}"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

const meter = (n: number, d: number, cls = '') => `<span class="meter ${cls}"><span style="width:${d ? Math.min(100, (100 * n) / d) : 0}%"></span></span>`;

function rules(d: ReportData): string {
  const scored = Object.values(d.texts).reduce((a, c) => a + c.scored, 0);
  const entries = Object.entries(d.rules).sort((a, b) => b[1] - a[1]);
  if (!scored) return `<section id="rules"><h2>Filter rules</h2><p class="muted">No text was scored (the run had no filter or clip stage).</p></section>`;
  const body = entries.length
    ? table(['rule', 'what it checks', 'texts rejected', 'of scored texts', ''], entries.map(([rule, n]) => [`<code>${esc(rule)}</code>`, esc(RULE_HELP[rule] ?? ''), fmt(n), pct(n, scored), meter(n, scored, 'filtered')]))
    : '<p class="muted">No rule rejected a text.</p>';
  return `<section id="rules"><h2>Filter rules</h2><p class="muted">${fmt(scored)} texts scored (web texts and synthetic captions); a text rejected by two rules counts for both (parquet <code>score_rejected_by</code>).</p>${body}</section>`;
}

function reasons(d: ReportData): string {
  const rows: string[][] = [];
  for (const status of ['filtered', 'failed'] as const) {
    for (const [reason, n] of Object.entries(d.reasons[status]).sort((a, b) => b[1] - a[1])) {
      rows.push([`<span class="tag ${status}">${status}</span>`, `<code>${esc(reason)}</code>`, fmt(n), pct(n, d.totals.rows), meter(n, d.totals.rows, status)]);
    }
  }
  const body = rows.length ? table(['status', 'reason', 'rows', 'of all rows', ''], rows) : '<p class="muted">Every row was kept.</p>';
  return `<section id="reasons"><h2>Rows not kept, by reason</h2>${body}</section>`;
}

/** Re-bins a fine histogram to at most `bars` bars over its occupied range (the threshold inside it). */
function coarse(h: ScoreHistogram, bars: number): { lo: number; width: number; counts: Record<string, number[]> } {
  const n = Object.values(h.counts)[0]?.length ?? 0;
  let first = n;
  let last = -1;
  for (const c of Object.values(h.counts)) c.forEach((v, i) => { if (v) { first = Math.min(first, i); last = Math.max(last, i); } });
  if (last < 0) { first = 0; last = n - 1; }
  if (h.threshold !== null) {
    const ti = Math.floor((h.threshold - h.min) / h.width + 1e-9);
    first = Math.min(first, Math.max(0, ti - 1));
    last = Math.max(last, Math.min(n - 1, ti));
  }
  const span = last - first + 1;
  const group = Math.max(1, Math.ceil(span / bars));
  // Align groups so that the threshold falls on a bar edge.
  if (h.threshold !== null) {
    const ti = Math.round((h.threshold - h.min) / h.width);
    first = Math.max(0, ti - Math.ceil((ti - first) / group) * group);
  }
  const nb = Math.ceil((last - first + 1) / group);
  const counts: Record<string, number[]> = {};
  for (const [src, c] of Object.entries(h.counts)) {
    const out = new Array<number>(nb).fill(0);
    for (let i = first; i <= last; i++) out[Math.floor((i - first) / group)] += c[i];
    counts[src] = out;
  }
  return { lo: h.min + first * h.width, width: h.width * group, counts };
}

function histogramSvg(name: string, h: ScoreHistogram): string {
  const W = 520;
  const H = 200;
  const pad = { l: 44, r: 12, t: 12, b: 34 };
  const c = coarse(h, 50);
  const sources = Object.keys(c.counts).sort((a, b) => (a === 'web' ? -1 : b === 'web' ? 1 : a.localeCompare(b)));
  const nb = c.counts[sources[0]]?.length ?? 0;
  // Each source as a share of its own texts, so a few web texts and many captions compare.
  const totals = Object.fromEntries(sources.map((s) => [s, c.counts[s].reduce((a, b) => a + b, 0)]));
  const share = (s: string, i: number) => (totals[s] ? c.counts[s][i] / totals[s] : 0);
  const maxShare = Math.max(1e-9, ...sources.flatMap((s) => c.counts[s].map((_, i) => share(s, i))));
  const x = (v: number) => pad.l + ((v - c.lo) / (c.width * nb)) * (W - pad.l - pad.r);
  const y = (f: number) => H - pad.b - (f / maxShare) * (H - pad.t - pad.b);
  const bw = (W - pad.l - pad.r) / Math.max(1, nb) / Math.max(1, sources.length);
  const bars = sources.map((s, si) => c.counts[s].map((n, i) => {
    if (!n) return '';
    const x0 = x(c.lo + i * c.width) + si * bw;
    const y0 = y(share(s, i));
    return `<rect x="${x0.toFixed(1)}" y="${y0.toFixed(1)}" width="${Math.max(0.5, bw - 0.5).toFixed(1)}" height="${(H - pad.b - y0).toFixed(1)}" fill="${colorOf(s)}"><title>${esc(s)} ${(c.lo + i * c.width).toFixed(3)}–${(c.lo + (i + 1) * c.width).toFixed(3)}: ${n} texts (${(100 * share(s, i)).toFixed(1)}%)</title></rect>`;
  }).join('')).join('');
  const hi = c.lo + c.width * nb;
  const step = niceStep((hi - c.lo) / 4);
  const ticks: string[] = [];
  for (let v = Math.ceil((c.lo - 1e-9) / step) * step; v <= hi + 1e-9; v += step) {
    ticks.push(`<line x1="${x(v)}" x2="${x(v)}" y1="${H - pad.b}" y2="${H - pad.b + 4}" stroke="#999"/><text x="${x(v)}" y="${H - pad.b + 16}" text-anchor="middle">${Number(v.toFixed(3))}</text>`);
  }
  const yTicks = [0, 0.5, 1].map((f) => `<text x="${pad.l - 6}" y="${y(f * maxShare) + 4}" text-anchor="end">${(100 * f * maxShare).toFixed(0)}%</text>`).join('');
  const thr = h.threshold !== null
    ? `<line class="thr" x1="${x(h.threshold)}" x2="${x(h.threshold)}" y1="${pad.t - 4}" y2="${H - pad.b}"/><text class="thr" x="${x(h.threshold) + (x(h.threshold) > W * 0.6 ? -4 : 4)}" y="${pad.t + 8}" text-anchor="${x(h.threshold) > W * 0.6 ? 'end' : 'start'}">${esc(h.thresholdLabel ?? `threshold ${h.threshold}`)}</text>`
    : '';
  const legend = sources.map((s) => `<span><span class="dot" style="background:${colorOf(s)}"></span>${esc(s)} (${fmt(totals[s])})</span>`).join(' ');
  return `<figure class="hist" data-score="${esc(name)}"><figcaption>${esc(SCORE_TITLE[name] ?? name)}</figcaption>
<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(name)} histogram">
<line x1="${pad.l}" x2="${W - pad.r}" y1="${H - pad.b}" y2="${H - pad.b}" stroke="#999"/>${bars}${ticks.join('')}${yTicks}${thr}
<text x="${(W + pad.l) / 2}" y="${H - 4}" text-anchor="middle" class="axis">${esc(name)} score (share of each source's texts per bar)</text></svg>
<div class="legend">${legend}</div></figure>`;
}

/** 1, 2 or 5 times a power of ten, at least `raw`. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-6)));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
}

function histograms(d: ReportData): string {
  const order = ['itm', 'itc', 'clip'];
  const names = Object.keys(d.histograms).sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  if (!names.length) return '';
  return `<section id="scores"><h2>Score distributions: web texts vs synthetic captions</h2><div class="hists">${names.map((n) => histogramSvg(n, d.histograms[n])).join('')}</div></section>`;
}

function labels(counts: Record<string, number>, rows: number): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const shown = entries.slice(0, 30);
  const max = shown[0]?.[1] ?? 1;
  return `<section id="labels"><h2>Zero-shot labels (top label per row)</h2>${table(['label', 'rows', 'of all rows', ''], shown.map(([l, n]) => [esc(l), fmt(n), pct(n, rows), meter(n, max, 'kept')]))}${entries.length > shown.length ? `<p class="muted">${entries.length - shown.length} more labels not shown.</p>` : ''}</section>`;
}

function failures(d: ReportData): string {
  const entries = Object.entries(d.reasons.failed).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return `<section id="failures"><h2>Failures</h2><p class="muted">No row failed.</p></section>`;
  return `<section id="failures"><h2>Failures by reason, with examples</h2>${table(
    ['reason', 'rows', 'example URLs'],
    entries.map(([reason, n]) => [`<code>${esc(reason)}</code>`, fmt(n), `<ul class="plain ex">${(d.failureExamples[reason] ?? []).map((e) => `<li><code>${esc(e.url ?? '(no url)')}</code>${e.detail ? `<br><span class="muted">${esc(e.detail)}</span>` : ''}</li>`).join('')}</ul>`]),
  )}<p class="muted">URLs are shown as text, not links.</p></section>`;
}

function scoreText(scores: Record<string, number>): string {
  return Object.entries(scores).map(([k, v]) => `${esc(k)} ${v.toFixed(3)}`).join(' · ');
}

function galleryCard(g: GalleryItem): string {
  const img = g.thumbnail ? `<img src="${g.thumbnail}" alt="${esc(g.key)}">` : '<div class="noimg">no image in output</div>';
  const texts = g.texts.map((t) => `<li class="${t.kept ? 'ok' : 'no'}"><span class="dot" style="background:${colorOf(t.source)}" title="${esc(t.source)}"></span><span class="txt">${esc(t.text)}</span><span class="sc">${scoreText(t.scores)}${t.kept ? ' · kept' : t.rejectedBy.length ? ` · ✗ ${esc(t.rejectedBy.join(', '))}` : ''}</span></li>`).join('');
  return `<div class="item ${g.status}" data-status="${g.status}"><div class="thumb">${img}</div><div class="meta"><div class="key"><code>${esc(g.key)}</code> <span class="tag ${g.status}">${g.status}</span></div>
<div class="decided">${esc(g.decidedBy)}</div>${g.selected !== null ? `<div class="selected">key.txt: “${esc(g.selected)}”</div>` : ''}${g.labels.length ? `<div class="muted">labels: ${esc(g.labels.join(', '))}</div>` : ''}<ul class="texts">${texts}</ul></div></div>`;
}

function gallery(items: GalleryItem[]): string {
  if (!items.length) return '';
  const n = (s: string) => items.filter((g) => g.status === s).length;
  return `<section id="gallery"><h2>Examples</h2><div class="tabs" role="tablist">
<button class="tab on" data-show="all">all (${items.length})</button><button class="tab" data-show="kept">kept (${n('kept')})</button><button class="tab" data-show="filtered">filtered (${n('filtered')})</button></div>
<div class="grid">${items.map(galleryCard).join('')}</div></section>`;
}

const SCRIPT = `
document.querySelectorAll('.tab').forEach(function (b) {
  b.addEventListener('click', function () {
    document.querySelectorAll('.tab').forEach(function (o) { o.classList.toggle('on', o === b); });
    var show = b.getAttribute('data-show');
    document.querySelectorAll('.item').forEach(function (it) { it.hidden = show !== 'all' && it.getAttribute('data-status') !== show; });
  });
});`;

const CSS = `
:root { --kept: #2a9d5c; --filtered: #e0a02b; --failed: #d0463b; --ink: #1d2330; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 0 auto; max-width: 1180px; padding: 20px 28px 40px; background: #fafafa; }
h1 { margin: 0; font-size: 24px; } h2 { font-size: 17px; margin: 0 0 10px; }
section, header { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin: 14px 0; }
.sub { margin: 2px 0 10px; color: var(--muted); }
code { font: 12px/1.3 ui-monospace, SFMono-Regular, Menlo, monospace; background: #f3f4f6; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; } .facts dt { color: var(--muted); } .facts dd { margin: 0; word-break: break-all; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; } .card { flex: 1; min-width: 140px; border-radius: 6px; padding: 10px 14px; background: #f6f7f9; border-left: 4px solid #999; }
.card .n { font-size: 24px; font-weight: 600; } .card .l { text-transform: uppercase; font-size: 11px; letter-spacing: .05em; color: var(--muted); } .card .s { color: var(--muted); }
.card.kept { border-color: var(--kept); } .card.filtered { border-color: var(--filtered); } .card.failed { border-color: var(--failed); } .card.rows { border-color: #2f6fdf; }
.stack { display: flex; height: 10px; border-radius: 5px; overflow: hidden; margin: 12px 0 6px; background: var(--line); }
.stack .kept, .meter.kept span { background: var(--kept); } .stack .filtered, .meter.filtered span { background: var(--filtered); } .stack .failed, .meter.failed span { background: var(--failed); }
.meter { display: inline-block; width: 140px; height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; vertical-align: middle; } .meter span { display: block; height: 100%; background: #888; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; } th { font-weight: 600; color: var(--muted); font-size: 12px; }
.tag { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; color: #fff; } .tag.kept { background: var(--kept); } .tag.filtered { background: var(--filtered); } .tag.failed { background: var(--failed); }
.muted { color: var(--muted); } .warn { color: var(--failed); font-weight: 600; }
ul.plain { list-style: none; padding: 0; margin: 6px 0 0; } ul.ex li { margin-bottom: 4px; }
.dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 5px; vertical-align: baseline; }
.hists { display: flex; flex-wrap: wrap; gap: 18px; } figure.hist { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: #555; } svg .axis { fill: var(--muted); } svg line.thr { stroke: var(--failed); stroke-width: 1.5; stroke-dasharray: 4 3; } svg text.thr { fill: var(--failed); font-weight: 600; }
.legend { color: var(--muted); } .legend > span { margin-right: 12px; }
.tabs { margin-bottom: 10px; } .tab { border: 1px solid var(--line); background: #fff; padding: 4px 12px; border-radius: 14px; cursor: pointer; font: inherit; } .tab.on { background: var(--ink); color: #fff; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 10px; }
.item { display: flex; gap: 10px; border: 1px solid var(--line); border-radius: 6px; padding: 8px; border-left: 4px solid var(--kept); } .item.filtered { border-left-color: var(--filtered); } .item[hidden] { display: none; }
.thumb img, .noimg { width: 112px; height: 112px; object-fit: contain; background: #eee; border-radius: 4px; display: flex; align-items: center; justify-content: center; font-size: 11px; color: var(--muted); text-align: center; }
.meta { min-width: 0; flex: 1; } .decided { font-weight: 600; margin: 2px 0; } .selected { font-style: italic; margin-bottom: 2px; }
ul.texts { list-style: none; padding: 0; margin: 4px 0 0; font-size: 12px; } ul.texts li { margin: 2px 0; } ul.texts li.no .txt { color: var(--muted); text-decoration: line-through; text-decoration-color: #bbb; }
ul.texts .sc { display: block; color: var(--muted); font-size: 11px; margin-left: 14px; }
footer { color: var(--muted); font-size: 12px; text-align: center; }
`;
