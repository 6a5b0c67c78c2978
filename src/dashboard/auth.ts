import { createHmac, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CapfiltError } from '../core/errors.ts';

/**
 * Dashboard access control. Without a token the dashboard only binds a loopback address (the
 * machine's own users can reach it, nobody else). With a token every request needs either
 * `Authorization: Bearer <token>` (scripts, Prometheus) or the session cookie the login form
 * sets (browsers). The cookie holds an HMAC of the token, never the token itself, is HttpOnly
 * (page scripts cannot read it) and SameSite=Strict (other sites cannot ride on it).
 */
export const SESSION_COOKIE = 'capfilt_session';

/** Paths reachable without credentials: the login form itself and its stylesheet. */
const PUBLIC_PATHS = new Set(['/login', '/assets/style.css', '/favicon.ico']);

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::ffff:127.0.0.1';
}

/** Refuses an exposed bind without a token, before anything listens. */
export function checkBind(host: string, token: string | null | undefined): void {
  if (!isLoopback(host) && !token) {
    throw new CapfiltError('DASHBOARD_TOKEN_REQUIRED',
      `refusing to bind the dashboard to ${host} without a token: anyone who can reach it could read samples and retry or delete jobs. ` +
      'Pass --token <secret> (or CAPFILT_DASHBOARD_TOKEN), or bind 127.0.0.1 and use an SSH tunnel', { host });
  }
}

function sessionValue(token: string): string {
  return createHmac('sha256', token).update('capfilt-dashboard-session-v1').digest('base64url');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookieOf(req: FastifyRequest, name: string): string | null {
  const header = req.headers.cookie;
  if (!header) return null;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return null;
}

export function isAuthorized(req: FastifyRequest, token: string): boolean {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ') && safeEqual(auth.slice(7).trim(), token)) return true;
  const cookie = cookieOf(req, SESSION_COOKIE);
  return cookie !== null && safeEqual(cookie, sessionValue(token));
}

function wantsHtml(req: FastifyRequest): boolean {
  return req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
}

/**
 * `next` after login must stay on this site. Browsers read a backslash as "/" and drop tabs and line
 * breaks, so "/\evil.example" or "/<tab>/evil.example" mean "//evil.example", another host.
 */
function localPath(next: unknown): string {
  return typeof next === 'string' && next.startsWith('/') && !/^\/[/\\]/.test(next) && !/[\\\t\n\r]/.test(next) ? next : '/';
}

function loginPage(error: boolean, next: string): string {
  const safeNext = localPath(next);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>capfilt · sign in</title><link rel="stylesheet" href="/assets/style.css"></head>
<body class="login"><form method="post" action="/login" class="card login-card">
<h1><span class="logo">cap<b>filt</b></span></h1><p class="muted">This dashboard needs its access token.</p>
${error ? '<p class="error" role="alert">That token is not right.</p>' : ''}
<input type="hidden" name="next" value="${safeNext.replace(/[&<>"']/g, '')}">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button type="submit">Sign in</button></form></body></html>`;
}

/** Installs the login routes and the guard on every other route. */
export function installAuth(app: FastifyInstance, token: string): void {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const path = req.url.split('?')[0];
    if (PUBLIC_PATHS.has(path) || isAuthorized(req, token)) return;
    if (wantsHtml(req)) return reply.redirect(`/login?next=${encodeURIComponent(req.url)}`);
    return reply.code(401).header('www-authenticate', 'Bearer realm="capfilt"').send({ error: 'unauthorized' });
  });

  app.get('/login', async (req, reply) => {
    const q = req.query as { next?: string; error?: string };
    return reply.type('text/html; charset=utf-8').send(loginPage(q.error === '1', q.next ?? '/'));
  });

  app.post('/login', async (req, reply) => {
    const body = (req.body ?? {}) as { token?: string; next?: string };
    const next = localPath(body.next);
    if (typeof body.token !== 'string' || !safeEqual(body.token, token)) {
      return reply.code(303).redirect(`/login?error=1&next=${encodeURIComponent(next)}`);
    }
    reply.header('set-cookie', `${SESSION_COOKIE}=${sessionValue(token)}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${30 * 86400}`);
    return reply.code(303).redirect(next);
  });

  app.post('/logout', async (_req, reply) => {
    reply.header('set-cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    return reply.code(303).redirect('/login');
  });
}
