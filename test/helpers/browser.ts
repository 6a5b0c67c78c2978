/** Debian's chromium driven by playwright-core, with the flags the closed network here needs. */
import { mkdirSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

export function artifactPath(name: string): string {
  const dir = new URL('../../test-artifacts/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  return new URL(name, dir).pathname;
}
