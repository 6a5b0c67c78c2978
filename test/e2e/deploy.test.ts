import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const env = { ...process.env, REDIS_PASSWORD: 'test-password', CAPFILT_DASHBOARD_TOKEN: 'test-token' };

/** `docker compose` (v2 plugin) where installed, else the standalone `docker-compose`. */
function composeCommand(): string[] | null {
  if (spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0) return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return ['docker-compose'];
  return null;
}

const compose = composeCommand();

describe('deployment files', () => {
  it.skipIf(!compose)(`docker compose config accepts docker-compose.yml${compose ? '' : ' (skipped: no docker compose or docker-compose on PATH; .ci/run installs one)'}`, () => {
    const [cmd, ...pre] = compose!;
    const out = execFileSync(cmd, [...pre, 'config'], { cwd: root, env, encoding: 'utf8' });
    const resolved = parseYaml(out) as { services: Record<string, { command?: string[]; deploy?: unknown }> };
    expect(Object.keys(resolved.services).sort()).toEqual(['caption-worker', 'dashboard', 'download-worker', 'filter-worker', 'redis', 'submit']);
    expect(JSON.stringify(resolved.services['caption-worker'].deploy)).toContain('nvidia');
    expect(resolved.services.redis.command).toEqual(expect.arrayContaining(['--appendonly', 'yes', '--maxmemory-policy', 'noeviction', '--requirepass', 'test-password']));
  });

  it.skipIf(!compose)('docker compose refuses to start without a Redis password', () => {
    const [cmd, ...pre] = compose!;
    const { REDIS_PASSWORD: _omit, ...noPassword } = env;
    const res = spawnSync(cmd, [...pre, 'config'], { cwd: root, env: noPassword, encoding: 'utf8' });
    expect(res.status).not.toBe(0);
    expect(res.stderr).toContain('REDIS_PASSWORD');
  });

  it('the compose config file validates against the config schema', () => {
    const { config } = loadConfig({ file: `${root}config/compose.yaml`, env: {} });
    expect(config.redis.autoStart).toBe(false);
    expect(config.staging.dir).toBe('/data/staging');
  });

  it('every capfilt service runs a command the CLI knows, with a metrics port for its health check', () => {
    const file = parseYaml(readFileSync(`${root}docker-compose.yml`, 'utf8')) as { services: Record<string, { image?: string; command?: string[] }> };
    const known = ['worker', 'dashboard', 'run', 'status'];
    for (const [name, svc] of Object.entries(file.services)) {
      if (!svc.image?.startsWith('capfilt:')) continue;
      expect(known, name).toContain(svc.command![0]);
      if (svc.command![0] === 'worker') expect(svc.command, name).toContain('--metrics-port');
    }
    const dockerfile = readFileSync(`${root}Dockerfile`, 'utf8');
    expect(dockerfile).toContain('ONNXRUNTIME_NODE_INSTALL=cuda12');
    expect(dockerfile).toMatch(/USER (node|capfilt)/);
  });
});
