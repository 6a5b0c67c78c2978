import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { cruise } from 'dependency-cruiser';
import { describe, expect, it } from 'vitest';

// The floor plan in .dependency-cruiser.cjs: no import cycle, no arrow that runs upward.
const root = fileURLToPath(new URL('../../../', import.meta.url));
const config = createRequire(import.meta.url)(`${root}.dependency-cruiser.cjs`);

describe('import graph of src/', () => {
  it('has no cycle and no upward import', async () => {
    const cwd = process.cwd();
    process.chdir(root);
    try {
      const result = await cruise(['src'], { ruleSet: { forbidden: config.forbidden }, ...config.options, validate: true });
      const output = result.output as { summary: { violations: { from: string; to: string; rule: { name: string } }[]; totalCruised: number } };
      expect(output.summary.totalCruised).toBeGreaterThan(150);
      expect(output.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`)).toEqual([]);
    } finally {
      process.chdir(cwd);
    }
  }, 120_000);
});
