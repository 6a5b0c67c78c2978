import { describe, expect, it } from 'vitest';
import { robotsOptOut } from '../../../src/io/robots-tag.ts';

describe('robotsOptOut', () => {
  const agents = ['capfilt', 'team-x'];
  it.each([
    [undefined, null],
    ['noai', 'noai'],
    ['NoImageAI', 'noimageai'],
    ['nofollow, noarchive', null],
    ['unavailable_after: 25 Jun 2010 15:00:00 PST, noindex', 'noindex'],
    ['max-image-preview: large', null],
    ['googlebot: noindex', null],
    ['googlebot: noindex, noai', null],
    ['capfilt: noimageindex', 'capfilt: noimageindex'],
    [['googlebot: noindex', 'noai'], 'noai'],
    [['otherbot: noai', 'team-x: noindex'], 'team-x: noindex'],
    ['none', 'noindex'],
  ])('%j → %s', (header, expected) => {
    expect(robotsOptOut(header as string | string[] | undefined, agents)).toBe(expected);
  });

  it('uses the configured directive list', () => {
    expect(robotsOptOut('noindex', agents, ['noai'])).toBeNull();
    expect(robotsOptOut('noarchive', agents, ['noarchive'])).toBe('noarchive');
  });
});
