// capfilt dashboard page: subscribes to /events (SSE) and renders the overview; the gallery is
// fetched from /api/runs/:id/samples when the run changes. Plain browser script, no build step.
(function () {
  'use strict';
  const $ = (sel) => document.querySelector(sel);
  const fmt = new Intl.NumberFormat('en-US');
  const n = (v) => fmt.format(Math.round(v));
  const pct = (a, b) => (b > 0 ? `${((100 * a) / b).toFixed(1)}%` : '–');
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

  function duration(sec) {
    if (sec == null || !isFinite(sec)) return '–';
    sec = Math.max(0, Math.round(sec));
    const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    return h ? `${h}h ${String(m).padStart(2, '0')}m` : m ? `${m}m ${String(s).padStart(2, '0')}s` : `${s}s`;
  }
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : `${Math.floor(s / 3600)} h ago`;
  }

  const state = {
    runId: new URLSearchParams(location.search).get('run'),
    overview: null,
    thresholds: { itm: null, itc: null },
    moved: { itm: false, itc: false },
    status: '',
    noise: '',
    samplesKey: '',
    samplesAt: 0,
    samples: [],
    noiseLabels: new Set(),
  };
  const charts = {
    rate: CapfiltCharts.rateChart($('#chart-rate')),
    itm: CapfiltCharts.histChart($('#chart-itm')),
    itc: CapfiltCharts.histChart($('#chart-itc')),
    clip: CapfiltCharts.histChart($('#chart-clip'), {
      shareOfAll: true,
      series: [{ key: 'kept', label: 'kept texts', colour: '#16a34a' }, { key: 'dropped', label: 'filtered texts', colour: '#d97706' }],
    }),
  };

  // ---- live connection -------------------------------------------------------------------
  let source = null;
  function connect() {
    if (source) source.close();
    const live = $('#live');
    source = new EventSource(`/events${state.runId ? `?run=${encodeURIComponent(state.runId)}` : ''}`);
    source.addEventListener('overview', (e) => {
      live.className = 'live on';
      live.lastElementChild.textContent = 'live';
      render(JSON.parse(e.data));
    });
    source.addEventListener('problem', (e) => {
      live.className = 'live off';
      live.lastElementChild.textContent = 'stale';
      renderWarnings([`The dashboard cannot read the stats: ${JSON.parse(e.data).message}`]);
    });
    source.onerror = () => { live.className = 'live off'; live.lastElementChild.textContent = 'reconnecting'; };
  }

  // ---- rendering -------------------------------------------------------------------------
  function render(o) {
    state.overview = o;
    $('#logout').hidden = !o.auth;
    renderWarnings(o.warnings);
    renderRunPicker(o);
    const run = o.run;
    $('#empty').hidden = !!run;
    $('#run-view').hidden = !run;
    if (!run) return;
    if (state.runId !== run.meta.runId) { state.runId = run.meta.runId; state.moved = { itm: false, itc: false }; }
    renderProgress(run, o.now);
    renderKpis(run.counters);
    charts.rate.update(run.series, run.meta.bucketSec);
    $('#rate-sub').textContent = `rows/s per stage, ${run.meta.bucketSec} s buckets`;
    renderStages(o, run);
    renderReasons(run.counters);
    for (const score of ['itm', 'itc']) {
      const fromRun = score === 'itm' ? run.meta.itmThreshold ?? 0.5 : run.meta.itcThreshold;
      if (!state.moved[score]) state.thresholds[score] = fromRun;
      renderHistogram(score, run);
    }
    renderClip(run);
    renderWorkers(o);
    maybeLoadSamples(run);
  }

  function renderWarnings(list) {
    $('#warnings').innerHTML = list.map((w) => `<div class="warning">${esc(w)}</div>`).join('');
  }

  function renderRunPicker(o) {
    const sel = $('#run-select');
    const opts = o.runs.map((r) => {
      const when = new Date(r.meta.startedAt).toLocaleString();
      return `<option value="${esc(r.meta.runId)}">${esc(r.meta.runId)} · ${esc(when)}</option>`;
    }).join('');
    if (sel.dataset.html !== opts) { sel.innerHTML = opts; sel.dataset.html = opts; }
    if (o.run) sel.value = o.run.meta.runId;
    const pill = $('#run-state');
    pill.textContent = o.run ? o.run.meta.state : '';
    pill.className = `pill ${o.run ? o.run.meta.state : ''}`;
  }

  function renderProgress(run, now) {
    const c = run.counters, m = run.meta;
    $('#run-input').textContent = m.input;
    $('#rows-done').textContent = n(c.done);
    $('#rows-total').textContent = m.totalRows == null ? '?' : n(m.totalRows);
    const total = m.totalRows || 0;
    $('#pct').textContent = total ? pct(c.done, total) : '–';
    const part = (k) => (total ? `${(100 * c.final[k]) / total}%` : '0%');
    $('#bar-kept').style.width = part('kept');
    $('#bar-filtered').style.width = part('filtered');
    $('#bar-failed').style.width = part('failed');
    $('#rate').textContent = run.rowsPerSec >= 10 ? n(run.rowsPerSec) : run.rowsPerSec.toFixed(1);
    $('#eta').textContent = m.state === 'running' ? duration(run.etaSec) : m.state === 'finished' ? 'done' : '–';
    $('#elapsed').textContent = duration(((m.finishedAt || now) - m.startedAt) / 1000);
    $('#shards').textContent = m.totalShards ? `${n(c.shardsDone)} / ${n(m.totalShards)}` : n(c.shardsDone);
    $('#n-kept').textContent = n(c.final.kept);
    $('#n-filtered').textContent = n(c.final.filtered);
    $('#n-failed').textContent = n(c.final.failed);
  }

  function kpi(id, a, b, sub) {
    const el = $(id);
    el.querySelector('.kpi-value').textContent = pct(a, b);
    el.querySelector('.kpi-sub').textContent = sub;
    el.querySelector('.mini-bar div').style.width = b > 0 ? `${(100 * a) / b}%` : '0';
  }

  function renderKpis(c) {
    const web = c.texts.web || { kept: 0, total: 0 };
    const syn = c.texts.synthetic || { kept: 0, total: 0 };
    kpi('#kpi-web', web.kept, web.total, `${n(web.kept)} of ${n(web.total)} web texts`);
    kpi('#kpi-syn', syn.kept, syn.total, `${n(syn.kept)} of ${n(syn.total)} captions`);
    kpi('#kpi-img', c.imagesAnyKept, c.imagesScored, `${n(c.imagesAnyKept)} of ${n(c.imagesScored)} scored images`);
    kpi('#kpi-fail', c.final.failed, c.done, `${n(c.final.failed)} of ${n(c.done)} written rows`);
  }

  function stageRate(points, now, bucketSec) {
    const recent = points.filter(([t]) => t >= now / 1000 - 60);
    if (!recent.length) return 0;
    const rows = recent.reduce((a, [, r]) => a + r * bucketSec, 0);
    return rows / Math.max(bucketSec, Math.min(60, now / 1000 - recent[0][0]));
  }

  function renderStages(o, run) {
    // A run that names no stages shows the server's stage queues (the stage table's order).
    const stages = run.meta.stages.length ? run.meta.stages : [...new Set(o.queues.map((q) => q.stage))];
    const rows = stages.map((s) => {
      const q = o.queues.find((x) => x.stage === s);
      const counts = q ? q.counts : null;
      const sc = run.counters.stages[s] || { rows: 0 };
      const live = o.workers.filter((w) => w.live && w.stages.includes(s)).length;
      const waiting = counts ? counts.waiting + counts.prioritized + counts.delayed : 0;
      const rate = run.meta.state === 'running' ? stageRate(run.series[s] || [], o.now, run.meta.bucketSec) : 0;
      const wtag = live ? `<span class="tag">${live} live</span>` : `<span class="tag ${waiting ? 'warn' : ''}">none</span>`;
      return `<tr class="${waiting || (counts && counts.active) ? '' : 'idle'}"><td><b>${esc(s)}</b></td>` +
        `<td class="num">${counts ? n(waiting) : '–'}</td><td class="num">${counts ? n(counts.active) : '–'}</td>` +
        `<td class="num">${counts ? n(counts.failed) : '–'}</td><td class="num">${n(sc.rows)}</td>` +
        `<td class="num">${rate >= 10 ? n(rate) : rate.toFixed(1)}</td><td>${wtag}</td></tr>`;
    });
    $('#stages tbody').innerHTML = rows.join('');
  }

  function renderReasons(c) {
    const entries = Object.entries(c.failedReasons).sort((a, b) => b[1] - a[1]);
    if (!entries.length) { $('#reasons').innerHTML = '<li class="none">No failed rows</li>'; return; }
    const max = entries[0][1];
    $('#reasons').innerHTML = entries.slice(0, 8).map(([r, v]) =>
      `<li><div><span class="mono">${esc(r)}</span><div class="r-bar"><i style="width:${(100 * v) / max}%"></i></div></div><span class="r-n">${n(v)} <span class="muted">(${pct(v, c.done)})</span></span></li>`).join('');
  }

  // The same bucket rule as src/telemetry/stats-schema.ts keptAtThreshold.
  function keptAt(spec, counts, t) {
    const from = Math.ceil(((t - spec.min) / (spec.max - spec.min)) * spec.buckets - 1e-9);
    let kept = 0, total = 0;
    counts.forEach((v, i) => { total += v; if (i >= from) kept += v; });
    return { kept, total };
  }

  function renderHistogram(score, run) {
    const hist = run.histograms[score];
    const t = state.thresholds[score];
    const input = $(`#th-${score}`);
    const shown = t == null ? (score === 'itc' ? 0.3 : 0.5) : t;
    if (document.activeElement !== input) input.value = String(shown);
    $(`#th-${score}-v`).textContent = t == null ? 'off' : t.toFixed(2);
    const scores = !run.meta.stages.length || run.meta.stages.includes('filter');
    const empty = scores ? 'No scored texts yet' : 'This run has no filter stage: nothing is scored';
    charts[score].update(hist, t, empty);
    if (!scores) { $(`#whatif-${score}`).innerHTML = ''; return; }
    const base = score === 'itm' ? run.meta.itmThreshold ?? 0.5 : run.meta.itcThreshold;
    const parts = [];
    for (const [src, label, cls] of [['web', 'web texts', 'web'], ['synthetic', 'synthetic captions', 'syn']]) {
      const counts = hist.counts[src];
      if (!counts) continue;
      const now = t == null ? null : keptAt(hist.spec, counts, t);
      const ref = base == null ? null : keptAt(hist.spec, counts, base);
      let delta = '';
      if (now && ref && now.total && t !== base) {
        const d = (100 * (now.kept - ref.kept)) / now.total;
        delta = `<span class="delta ${d >= 0 ? 'up' : 'down'}">${d >= 0 ? '+' : ''}${d.toFixed(1)} pts</span>`;
      }
      parts.push(`<div class="w ${cls}"><div class="muted">${label} kept at ≥ ${t == null ? '–' : t.toFixed(2)}</div><b>${now ? pct(now.kept, now.total) : '–'}</b>${delta}</div>`);
    }
    if (t == null) {
      $(`#whatif-${score}`).innerHTML = '<div class="w"><div class="muted">This run does not filter on ITC. Drag the threshold to see what an ITC cut would keep.</div></div>';
      return;
    }
    $(`#whatif-${score}`).innerHTML = parts.join('') || '<div class="muted">No scored texts yet</div>';
  }

  // ---- CLIP (runs with the clip stage only) ---------------------------------------------
  function barList(entries, total, emptyText) {
    if (!entries.length) return `<li class="none">${esc(emptyText)}</li>`;
    const max = Math.max(...entries.map(([, v]) => v));
    return entries.map(([k, v]) =>
      `<li><div><span class="mono">${esc(k)}</span><div class="r-bar"><i style="width:${(100 * v) / max}%"></i></div></div><span class="r-n">${n(v)} <span class="muted">(${pct(v, total)})</span></span></li>`).join('');
  }

  function renderClip(run) {
    const on = run.meta.stages.includes('clip');
    $('#clip-view').hidden = !on;
    if (!on) return;
    const c = run.counters;
    const hist = run.clipHistogram || { spec: { min: -1, max: 1, buckets: 100 }, counts: {} };
    charts.clip.update(hist, run.meta.clipMinScore, 'No CLIP scores yet');
    const total = (k) => (hist.counts[k] || []).reduce((a, b) => a + b, 0);
    const kept = total('kept'), dropped = total('dropped');
    $('#clip-summary').innerHTML = `<div class="w"><div class="muted">CLIP rule</div><b>${run.meta.clipMinScore == null ? 'none (scores only)' : `≥ ${run.meta.clipMinScore.toFixed(3)}`}</b></div>` +
      `<div class="w"><div class="muted">texts kept, all rules</div><b>${pct(kept, kept + dropped)}</b></div>`;
    const scored = Object.values(c.texts).reduce((a, t) => a + t.total, 0);
    $('#rules').innerHTML = barList(Object.entries(c.rejectedBy).sort((a, b) => b[1] - a[1]), scored, 'No text rejected yet');
    const labels = Object.entries(c.labels).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const labelled = labels.reduce((a, [, v]) => a + v, 0);
    $('#label-dist').innerHTML = barList(labels.slice(0, 12), labelled, 'This run labels no images (--labels)');
    $('#embeddings-written').textContent = n(c.embeddingsWritten);
    $('#labelled-images').textContent = n(labelled);
  }

  function renderWorkers(o) {
    const live = o.workers.filter((w) => w.live).length;
    $('#workers-sum').textContent = `${live} live${o.workers.length > live ? `, ${o.workers.length - live} lost` : ''}`;
    $('#workers tbody').innerHTML = o.workers.length ? o.workers.map((w) => {
      const rate = w.rowsPerSec >= 10 ? n(w.rowsPerSec) : w.rowsPerSec.toFixed(1);
      return `<tr class="${w.live ? '' : 'idle'}"><td><span class="status-dot ${w.live ? '' : 'lost'}" title="${w.live ? 'live' : 'no heartbeat'}"></span></td>` +
        `<td><b>${esc(w.host)}</b></td><td class="num">${w.pid}</td><td>${w.stages.map((s) => `<span class="tag">${esc(s)}</span>`).join('')}</td>` +
        `<td class="mono">${esc(w.device)}</td><td class="num">${rate}</td><td class="num">${n(w.rowsTotal)}</td><td>${ago(o.now - w.lastSeen)}</td></tr>`;
    }).join('') : '<tr class="idle"><td colspan="8">No worker is running. Start some with <code>npx capfilt worker --stages …</code>.</td></tr>';
  }

  // ---- samples ---------------------------------------------------------------------------
  function maybeLoadSamples(run) {
    const key = `${run.meta.runId}|${state.status}|${state.noise}|${run.meta.state}|${run.counters.shardsDone}`;
    if (key === state.samplesKey) return;
    // Shards finish often on a fast run; a gallery that reshuffles every second is unreadable.
    // A new filter, run or run state (e.g. finished) reloads at once.
    if (key.split('|').slice(0, 4).join('|') === state.samplesKey.split('|').slice(0, 4).join('|') && Date.now() - state.samplesAt < 4000) return;
    state.samplesKey = key;
    state.samplesAt = Date.now();
    loadSamples(run.meta.runId);
  }

  async function loadSamples(runId) {
    const q = new URLSearchParams({ limit: '18' });
    if (state.status) q.set('status', state.status);
    if (state.noise) q.set('noise', state.noise);
    const res = await fetch(`/api/runs/${encodeURIComponent(runId)}/samples?${q}`);
    if (!res.ok) return;
    state.samples = await res.json();
    for (const s of state.samples) state.noiseLabels.add(s.noise || 'none');
    renderNoiseOptions();
    renderGallery();
  }

  function renderNoiseOptions() {
    const sel = $('#noise-select');
    const have = new Set([...sel.options].map((o) => o.value));
    for (const label of [...state.noiseLabels].sort()) {
      if (!have.has(label)) sel.add(new Option(label === 'none' ? 'no label' : label, label));
    }
  }

  function textRow(s) {
    // A run without the filter stage (CLIP only) has no ITM/ITC; one without CLIP has no CLIP score.
    const scores = [['ITM', s.itm], ['ITC', s.itc], ['CLIP', s.clip]].filter(([, v]) => typeof v === 'number')
      .map(([name, v]) => `${name} <b>${v.toFixed(2)}</b> · `).join('');
    return `<div class="text-row ${s.kept ? 'kept' : 'dropped'}"><span class="src ${s.source}" title="${s.source}"></span>` +
      `<div><span class="t">${esc(s.text || '∅ (empty)')}</span><span class="scores">${scores}${s.kept ? 'kept' : 'dropped'}</span></div></div>`;
  }

  const topLabel = (s) => (s.labels && s.labels.length ? s.labels[0] : null);

  function sampleTexts(s) {
    if (s.scores.length) return s.scores.map(textRow).join('');
    const rows = [];
    if (s.text != null) rows.push(`<div class="text-row"><span class="src web"></span><div class="t">${esc(s.text || '∅ (empty)')}</div></div>`);
    for (const c of s.captions) rows.push(`<div class="text-row"><span class="src synthetic"></span><div class="t">${esc(c)}</div></div>`);
    return rows.join('');
  }

  function renderGallery() {
    const g = $('#gallery');
    if (!state.samples.length) { g.innerHTML = '<div class="none">No samples match.</div>'; return; }
    g.innerHTML = state.samples.map((s, i) => `<div class="sample" data-i="${i}" tabindex="0">` +
      `<div class="thumb">${s.thumb ? `<img src="${s.thumb}" alt="sample ${esc(s.key)}">` : `<div class="noimg">no image<br>${esc(s.reason || '')}</div>`}` +
      `<span class="badge ${s.status}">${s.status}</span>${s.noise ? `<span class="noise">${esc(s.noise)}</span>` : ''}` +
      `${topLabel(s) ? `<span class="top-label" title="top zero-shot label">${esc(topLabel(s).label)} ${(100 * topLabel(s).prob).toFixed(0)}%</span>` : ''}</div>` +
      `<div class="body">${sampleTexts(s)}${s.status === 'failed' ? `<div class="reason">${esc(s.reason)}</div>` : ''}</div></div>`).join('');
  }

  function openSample(s) {
    const img = s.thumb ? `<img src="${s.thumb}" alt="sample ${esc(s.key)}">` : '<div style="width:400px;height:400px;background:#111522"></div>';
    $('#modal-body').innerHTML = `<div class="modal-grid">${img}<div class="info">` +
      `<div><span class="badge ${s.status}" style="position:static">${s.status}</span> ${s.noise ? `<span class="tag">noise: ${esc(s.noise)}</span>` : ''}</div>` +
      `<h2 class="mono">${esc(s.key)}</h2>${sampleTexts(s)}` +
      (s.selected ? `<div class="kv">selected caption: <b>${esc(s.selected)}</b></div>` : '') +
      (s.labels && s.labels.length ? `<div class="kv">zero-shot labels: ${s.labels.map((l) => `<b>${esc(l.label)}</b> ${(100 * l.prob).toFixed(1)}%`).join(', ')}</div>` : '') +
      (s.reason ? `<div class="reason">${esc(s.reason)}${s.reasonDetail ? ` — ${esc(s.reasonDetail)}` : ''}</div>` : '') +
      `<div class="kv">${s.url ? `url: ${esc(s.url)}<br>` : ''}${s.width ? `original size: ${s.width}×${s.height}<br>` : ''}shard: ${esc(s.shardId || '–')}</div>` +
      `</div></div>`;
    $('#modal').showModal();
  }

  // ---- controls --------------------------------------------------------------------------
  $('#run-select').addEventListener('change', (e) => {
    state.runId = e.target.value;
    state.moved = { itm: false, itc: false };
    state.samplesKey = '';
    history.replaceState(null, '', `?run=${encodeURIComponent(state.runId)}`);
    connect();
  });
  for (const score of ['itm', 'itc']) {
    $(`#th-${score}`).addEventListener('input', (e) => {
      state.thresholds[score] = Number(e.target.value);
      state.moved[score] = true;
      if (state.overview && state.overview.run) renderHistogram(score, state.overview.run);
    });
  }
  document.querySelectorAll('[data-reset]').forEach((b) => b.addEventListener('click', () => {
    const score = b.dataset.reset;
    state.moved[score] = false;
    const run = state.overview && state.overview.run;
    if (!run) return;
    state.thresholds[score] = score === 'itm' ? run.meta.itmThreshold ?? 0.5 : run.meta.itcThreshold;
    renderHistogram(score, run);
  }));
  $('#status-chips').addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b) return;
    document.querySelectorAll('#status-chips button').forEach((x) => x.classList.toggle('on', x === b));
    state.status = b.dataset.status;
    state.samplesKey = '';
    if (state.overview && state.overview.run) maybeLoadSamples(state.overview.run);
  });
  $('#noise-select').addEventListener('change', (e) => {
    state.noise = e.target.value;
    state.samplesKey = '';
    if (state.overview && state.overview.run) maybeLoadSamples(state.overview.run);
  });
  $('#gallery').addEventListener('click', (e) => {
    const card = e.target.closest('.sample');
    if (card) openSample(state.samples[Number(card.dataset.i)]);
  });
  $('#gallery').addEventListener('keydown', (e) => {
    const card = e.target.closest('.sample');
    if (card && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); openSample(state.samples[Number(card.dataset.i)]); }
  });
  $('#modal').addEventListener('click', (e) => { if (e.target === $('#modal')) $('#modal').close(); });

  connect();
})();
