/**
 * X-Robots-Tag opt-out, checked on the response headers before the body is read (the image bytes
 * of an opted-out resource never enter the process). Forms handled, as search engines read them:
 *   X-Robots-Tag: noai, noimageai            (applies to every agent)
 *   X-Robots-Tag: capfilt: noai              (applies to the named agent only)
 *   X-Robots-Tag: otherbot: noindex, noai    (the agent prefix covers the rest of that value)
 *   X-Robots-Tag: none                       (= noindex, nofollow)
 * Several header lines are independent values.
 */

/** Directives whose own syntax has a colon, so "name: value" is not an agent prefix. */
const VALUED_DIRECTIVES = new Set(['unavailable_after', 'max-snippet', 'max-image-preview', 'max-video-preview']);

export const DEFAULT_DISALLOWED_DIRECTIVES = ['noai', 'noimageai', 'noindex', 'noimageindex'];

/** The disallowed directive found, or null when the resource may be used. */
export function robotsOptOut(
  header: string | string[] | undefined,
  agents: string[],
  disallowed: string[] = DEFAULT_DISALLOWED_DIRECTIVES,
): string | null {
  if (header === undefined) return null;
  const mine = new Set(agents.map((a) => a.toLowerCase()));
  const banned = new Set(disallowed.map((d) => d.toLowerCase()));
  for (const value of Array.isArray(header) ? header : [header]) {
    let agent: string | null = null;
    for (const rawPart of value.split(',')) {
      let part = rawPart.trim().toLowerCase();
      const m = part.match(/^([a-z0-9_.-]+)\s*:\s*(.*)$/);
      if (m && !VALUED_DIRECTIVES.has(m[1])) {
        agent = m[1];
        part = m[2].trim();
      }
      if (part === '' || (agent !== null && !mine.has(agent))) continue;
      const directives = part === 'none' ? ['none', 'noindex', 'nofollow'] : [part];
      for (const d of directives) if (banned.has(d)) return agent === null ? d : `${agent}: ${d}`;
    }
  }
  return null;
}
