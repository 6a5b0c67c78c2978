// uPlot wrappers for the dashboard: a throughput time series and score histograms with a
// threshold line. Plain browser script (no build step); exposes window.CapfiltCharts.
(function () {
  'use strict';
  const STAGE_COLOURS = { download: '#64748b', caption: '#0d9488', filter: '#4f46e5', write: '#16a34a' };
  const SOURCE_COLOURS = { web: '#4f46e5', synthetic: '#0d9488', trusted: '#7c3aed' };
  const EXTRA = ['#db2777', '#ea580c', '#0891b2', '#65a30d'];

  function alpha(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
  }

  function widthOf(el) {
    return Math.max(280, el.clientWidth || el.parentElement.clientWidth - 40);
  }

  const axis = { stroke: '#6b7280', grid: { stroke: '#eef0f4', width: 1 }, ticks: { stroke: '#e6e8ee', width: 1 }, font: '11px system-ui, sans-serif' };

  function observeWidth(el, plot) {
    new ResizeObserver(() => plot.setSize({ width: widthOf(el), height: plot.height })).observe(el);
  }

  /** rows/s per stage over time. update(series: {stage: [[t, rps], ...]}, bucketSec) */
  function rateChart(el) {
    let plot = null;
    let key = '';
    return {
      update(series, bucketSec) {
        const stages = Object.keys(series).filter((s) => series[s].length);
        if (!stages.length) { el.innerHTML = '<div class="muted" style="padding:80px 0;text-align:center">No rows through any stage yet</div>'; plot = null; key = ''; return; }
        let lo = Infinity, hi = -Infinity;
        for (const s of stages) for (const [t] of series[s]) { lo = Math.min(lo, t); hi = Math.max(hi, t); }
        const xs = [];
        for (let t = lo; t <= hi; t += bucketSec) xs.push(t);
        const data = [xs, ...stages.map((s) => {
          const m = new Map(series[s]);
          return xs.map((t) => m.get(t) ?? 0);
        })];
        const k = stages.join(',');
        if (!plot || k !== key) {
          el.innerHTML = '';
          key = k;
          plot = new uPlot({
            width: widthOf(el), height: 300,
            cursor: { drag: { x: false, y: false } },
            legend: { live: false },
            scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
            axes: [{ ...axis }, { ...axis, size: 48, label: 'rows/s', labelSize: 16, labelFont: '11px system-ui' }],
            series: [{}, ...stages.map((s, i) => {
              const c = STAGE_COLOURS[s] || EXTRA[i % EXTRA.length];
              return { label: s, stroke: c, width: 2, points: { show: false }, fill: s === 'write' ? alpha(c, 0.08) : undefined, value: (u, v) => (v == null ? '–' : v.toFixed(1)) };
            })],
          }, data, el);
          observeWidth(el, plot);
        } else {
          plot.setData(data);
        }
      },
    };
  }

  const SOURCE_SERIES = [
    { key: 'web', label: 'web texts', colour: SOURCE_COLOURS.web },
    { key: 'synthetic', label: 'synthetic captions', colour: SOURCE_COLOURS.synthetic },
    { key: 'trusted', label: 'trusted', colour: SOURCE_COLOURS.trusted },
  ];

  /**
   * Histogram of one score as share of texts per bucket, one stepped and filled series per key of
   * `counts` (by default the text sources, web vs synthetic, each as a share of its own texts;
   * `shareOfAll` makes every series a share of all texts, for parts of one whole such as kept vs
   * filtered); the region below the threshold is shaded and the threshold drawn as a line.
   * update(hist: {spec, counts: {key: number[]}}, threshold)
   */
  function histChart(el, opts = {}) {
    const seriesDefs = opts.series || SOURCE_SERIES;
    let plot = null;
    let key = '';
    let threshold = null;
    let range = [0, 1];

    const drawThreshold = (u) => {
      if (threshold == null) return;
      const ctx = u.ctx;
      const x = Math.round(u.valToPos(threshold, 'x', true));
      const { top, height, left } = u.bbox;
      ctx.save();
      ctx.fillStyle = 'rgba(220,38,38,0.06)';
      ctx.fillRect(left, top, Math.max(0, x - left), height);
      ctx.strokeStyle = '#111522';
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = '#111522';
      ctx.font = `${600} ${11 * devicePixelRatio}px system-ui, sans-serif`;
      ctx.fillText(`threshold ${threshold.toFixed(2)}`, x + 6 * devicePixelRatio, top + 14 * devicePixelRatio);
      ctx.restore();
    };

    return {
      update(hist, th, emptyText) {
        threshold = th;
        const spec = hist.spec;
        const defs = seriesDefs.filter((d) => hist.counts[d.key] && hist.counts[d.key].some((n) => n > 0));
        const sources = defs.map((d) => d.key);
        const allTotal = sources.reduce((a, s) => a + hist.counts[s].reduce((x, y) => x + y, 0), 0) || 1;
        if (!sources.length) { el.innerHTML = `<div class="muted" style="padding:80px 0;text-align:center">${emptyText || 'No scored texts yet'}</div>`; plot = null; key = ''; return; }
        const w = (spec.max - spec.min) / spec.buckets;
        const edges = Array.from({ length: spec.buckets + 1 }, (_, i) => +(spec.min + i * w).toFixed(6));
        // Show the populated part of the axis (ITC rarely leaves [-0.2, 0.8]) plus the threshold.
        let first = spec.buckets, last = 0;
        for (const s of sources) hist.counts[s].forEach((n, i) => { if (n > 0) { first = Math.min(first, i); last = Math.max(last, i); } });
        let lo = spec.min + Math.max(0, first - 2) * w;
        let hi = spec.min + Math.min(spec.buckets, last + 3) * w;
        if (th != null) { lo = Math.min(lo, th - 2 * w); hi = Math.max(hi, th + 2 * w); }
        if (spec.min === 0 && spec.max === 1) { lo = 0; hi = 1; }
        range = [Math.max(spec.min, lo), Math.min(spec.max, hi)];
        const data = [edges, ...sources.map((s) => {
          const c = hist.counts[s];
          const total = opts.shareOfAll ? allTotal : c.reduce((a, b) => a + b, 0) || 1;
          const pct = c.map((n) => (100 * n) / total);
          return [...pct, pct[pct.length - 1]];
        })];
        const k = sources.join(',');
        if (!plot || k !== key) {
          el.innerHTML = '';
          key = k;
          plot = new uPlot({
            width: widthOf(el), height: 230,
            cursor: { drag: { x: false, y: false }, points: { show: false } },
            legend: { live: false },
            scales: { x: { time: false, range: () => range }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
            axes: [{ ...axis }, { ...axis, size: 44, values: (u, vals) => vals.map((v) => `${v}%`) }],
            series: [{ label: 'score', value: (u, v) => (v == null ? '–' : v.toFixed(2)) }, ...defs.map((d) => ({
              label: d.label,
              stroke: d.colour, width: 1.5, fill: alpha(d.colour, 0.22),
              paths: uPlot.paths.stepped({ align: 1 }),
              points: { show: false },
              value: (u, v) => (v == null ? '–' : `${v.toFixed(1)}%`),
            }))],
            hooks: { draw: [drawThreshold] },
          }, data, el);
          observeWidth(el, plot);
        } else {
          plot.setData(data);
        }
      },
      redraw(th) {
        threshold = th;
        if (plot) plot.redraw(false, false);
      },
    };
  }

  window.CapfiltCharts = { rateChart, histChart, SOURCE_COLOURS };
})();
