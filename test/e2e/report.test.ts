import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactPath, launchChromium } from '../helpers/browser.ts';
import { runCli } from '../helpers/cli.ts';
import { demoOutput, type DemoOutput } from '../helpers/demo-output.ts';

/**
 * report.html as a person opens it: written by a real demo run, rebuilt by `capfilt report`,
 * opened from disk in headless Chromium with every request recorded and none allowed out.
 */
let demo: DemoOutput;
let browser: Browser;

beforeAll(async () => {
  demo = await demoOutput(80, 'report');
  browser = await launchChromium();
}, 300_000);
afterAll(async () => {
  await browser?.close();
  await demo?.close();
});

describe('report.html', { timeout: 120_000 }, () => {
  it('is written by the run and rebuilt by `capfilt report OUT`', async () => {
    const file = join(demo.out, 'report.html');
    const first = statSync(file).mtimeMs;
    const run = JSON.parse(readFileSync(join(demo.out, 'run.json'), 'utf8')) as { kept: number; filtered: number; failed: number };
    const r = await runCli('report', demo.out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { file: string; totals: { rows: number; kept: number; filtered: number; failed: number } };
    expect(out.file).toBe(file);
    expect(out.totals).toEqual({ rows: 80, kept: run.kept, filtered: run.filtered, failed: run.failed });
    expect(statSync(file).mtimeMs).toBeGreaterThanOrEqual(first);
    const bad = await runCli('report', join(demo.out, 'filtered'));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('REPORT_FAILED');
  });

  it('renders offline in Chromium: no console error, no request but the file itself, every section and thumbnail', async () => {
    const page = await browser.newPage({ viewport: { width: 1240, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (req) => { requests.push(req.url()); });
    // Anything that tried to leave the page would be refused here as well as recorded.
    await page.route(/^(https?|wss?|ftp):/, (route) => route.abort());
    const url = `file://${join(demo.out, 'report.html')}`;
    await page.goto(url, { waitUntil: 'load' });
    await page.screenshot({ path: artifactPath('report.png'), fullPage: true });
    expect(errors).toEqual([]);
    expect(requests.filter((u) => !u.startsWith('data:'))).toEqual([url]);

    const run = JSON.parse(readFileSync(join(demo.out, 'run.json'), 'utf8')) as { rows: number; kept: number };
    expect(await page.locator('.card.rows .n').textContent()).toBe(String(run.rows));
    expect(await page.locator('.card.kept .n').textContent()).toBe(String(run.kept));
    for (const id of ['totals', 'rules', 'reasons', 'scores', 'labels', 'failures', 'gallery']) expect(await page.locator(`section#${id}`).count(), id).toBe(1);
    // ITM, ITC and CLIP histograms, web vs synthetic, the ITM threshold drawn.
    expect(await page.locator('figure.hist').evaluateAll((fs) => fs.map((f) => f.getAttribute('data-score')))).toEqual(['itm', 'itc', 'clip']);
    expect(await page.locator('figure.hist[data-score="itm"] .legend').textContent()).toMatch(/web .*synthetic/);
    expect(await page.locator('figure.hist[data-score="itm"] text.thr').textContent()).toContain('filter.itmThreshold 0.5');
    expect(await page.locator('figure.hist[data-score="itm"] rect').count()).toBeGreaterThan(3);
    expect(await page.locator('#rules td code').allTextContents()).toContain('itm');

    // Thumbnails decoded from their data: URIs; the tabs filter the gallery.
    const thumbs = await page.locator('.item img').evaluateAll((imgs) => imgs.map((i) => ({ w: (i as HTMLImageElement).naturalWidth, data: (i as HTMLImageElement).src.startsWith('data:image/jpeg;base64,') })));
    expect(thumbs.length).toBeGreaterThan(4);
    for (const t of thumbs) expect(t).toEqual({ w: expect.any(Number), data: true });
    expect(thumbs.every((t) => t.w > 0)).toBe(true);
    const counts = async () => ({ kept: await page.locator('.item.kept:visible').count(), filtered: await page.locator('.item.filtered:visible').count() });
    const all = await counts();
    expect(all.kept).toBeGreaterThan(0);
    expect(all.filtered).toBeGreaterThan(0);
    await page.locator('.tab[data-show="filtered"]').click();
    expect(await counts()).toEqual({ kept: 0, filtered: all.filtered });
    await page.locator('.tab[data-show="kept"]').click();
    expect(await counts()).toEqual({ kept: all.kept, filtered: 0 });
    expect(await page.locator('.item.filtered .decided').first().textContent()).toMatch(/^rejected by /);
    expect(errors).toEqual([]);
    await page.close();
  });
});
