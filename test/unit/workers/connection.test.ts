import { describe, expect, it } from 'vitest';
import { redisSchema } from '../../../src/config/schema.ts';
import { isClusterUrl, isRedisConnectionError, parseRedisUrl, queueName, redisAddress, redisOptionsFromUrl } from '../../../src/workers/connection.ts';

describe('Redis URLs', () => {
  it('reads a single server with credentials, database and TLS', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6380/2')).toEqual({ cluster: false, nodes: [{ host: '127.0.0.1', port: 6380 }], username: undefined, password: undefined, db: 2, tls: false });
    expect(parseRedisUrl('rediss://u%40x:p%3Aw@redis.internal')).toMatchObject({ cluster: false, nodes: [{ host: 'redis.internal', port: 6379 }], username: 'u@x', password: 'p:w', tls: true });
    expect(redisOptionsFromUrl('rediss://:pw@[::1]:7000')).toMatchObject({ host: '::1', port: 7000, password: 'pw', tls: {} });
  });

  it('reads a cluster by its seed nodes, with a password alone or user and password', () => {
    const e = parseRedisUrl('redis+cluster://h1:7000,h2:7001,[::1]:7002');
    expect(e).toMatchObject({ cluster: true, tls: false, nodes: [{ host: 'h1', port: 7000 }, { host: 'h2', port: 7001 }, { host: '::1', port: 7002 }] });
    expect(parseRedisUrl('rediss+cluster://:s%40cret@h1:7000/')).toMatchObject({ cluster: true, tls: true, password: 's@cret', username: undefined });
    expect(parseRedisUrl('redis+cluster://app:pw@h1')).toMatchObject({ username: 'app', password: 'pw', nodes: [{ host: 'h1', port: 6379 }] });
    expect(isClusterUrl('redis+cluster://h1:7000')).toBe(true);
    expect(isClusterUrl('redis://h1:7000')).toBe(false);
    expect(redisAddress('redis+cluster://u:pw@h1:7000,h2:7001')).toBe('cluster h1:7000 (+1)');
  });

  it('hash-tags queue names on a cluster only', () => {
    expect(queueName('redis://h:1', 'capfilt', 'download')).toBe('download');
    expect(queueName('redis+cluster://h:1', 'capfilt', 'download')).toBe('{capfilt.download}');
  });

  it('the config accepts the four schemes and nothing else', () => {
    const base = { prefix: 'capfilt', autoStart: true, outageTimeoutMs: 1000 };
    for (const url of ['redis://h:1', 'rediss://h:1', 'redis+cluster://h:1,h:2', 'rediss+cluster://h:1']) expect(redisSchema.safeParse({ ...base, url }).success).toBe(true);
    for (const url of ['http://h:1', 'cluster://h:1', 'redis+sentinel://h:1']) expect(redisSchema.safeParse({ ...base, url }).success).toBe(false);
  });

  it('a cluster failing a master over is waited out, not a command error', () => {
    // What a coordinator saw in CI when a master died: ioredis gave up after its redirections.
    expect(isRedisConnectionError(new Error('Too many Cluster redirections. Last error: ReplyError: CLUSTERDOWN The cluster is down'))).toBe(true);
    expect(isRedisConnectionError(new Error('CLUSTERDOWN The cluster is down'))).toBe(true);
    expect(isRedisConnectionError(new Error('TRYAGAIN Multiple keys request during rehashing of slot'))).toBe(true);
    expect(isRedisConnectionError(new Error('CROSSSLOT Keys in request don\'t hash to the same slot'))).toBe(false);
  });
});
