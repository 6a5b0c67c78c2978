import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * A command under a real pseudo-terminal (util-linux `script`), so it sees isTTY stdout and
 * stderr exactly as in a user's terminal, and a small screen model that replays what it wrote
 * (carriage return, newline, cursor column/up/down, erase in line/display; other escapes
 * ignored), so a test can check what a person would see at the end, not a byte stream.
 */
const BIN = fileURLToPath(new URL('../../bin/capfilt.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface PtyResult {
  code: number;
  /** Every byte the command wrote to the terminal. */
  raw: string;
  /** The screen's lines at the end (scrollback included), trailing spaces trimmed. */
  screen: string[];
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** `interruptWhen`: once the output matches it, type Ctrl-C into the terminal (SIGINT to the command, as a person would). */
export function capfiltInPty(args: string[], env: Record<string, string> = {}, o: { cols?: number; interruptWhen?: RegExp } = {}): Promise<PtyResult> {
  const cols = o.cols ?? 140;
  const command = `stty cols ${cols} rows 50; exec ${[process.execPath, BIN, ...args].map(shellQuote).join(' ')}`;
  return new Promise((resolve, reject) => {
    // -q quiet, -f flush at once, -e the command's exit code, -c the command; the typescript goes nowhere.
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: ROOT, env: { ...process.env, TERM: 'xterm-256color', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let raw = '';
    let interrupted = false;
    child.stdout.on('data', (d: Buffer) => {
      raw += d.toString('utf8');
      if (o.interruptWhen && !interrupted && o.interruptWhen.test(raw)) {
        interrupted = true;
        child.stdin.write('\x03');
      }
    });
    child.stderr.on('data', (d: Buffer) => { raw += d.toString('utf8'); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, raw, screen: renderScreen(raw) }));
  });
}

export function renderScreen(data: string): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  const at = (r: number) => {
    while (lines.length <= r) lines.push([]);
    return lines[r];
  };
  for (let i = 0; i < data.length; i++) {
    const ch = data[i];
    if (ch === '\x1b') {
      const m = /^\x1b\[([0-9;?]*)([A-Za-z])/.exec(data.slice(i, i + 16));
      if (m) {
        const n = m[1] && /^\d+$/.test(m[1]) ? Number(m[1]) : null;
        if (m[2] === 'G') col = (n ?? 1) - 1;
        else if (m[2] === 'K') {
          if (!m[1] || m[1] === '0') at(row).splice(col);
          else if (m[1] === '2') lines[row] = [];
        } else if (m[2] === 'A') row = Math.max(0, row - (n ?? 1));
        else if (m[2] === 'B') { row += n ?? 1; at(row); }
        else if (m[2] === 'J') { at(row).splice(col); lines.splice(row + 1); }
        i += m[0].length - 1;
      } else i += 1;
      continue;
    }
    if (ch === '\r') col = 0;
    else if (ch === '\n') { row++; col = 0; at(row); }
    else {
      const line = at(row);
      while (line.length < col) line.push(' ');
      line[col++] = ch;
    }
  }
  return lines.map((l) => l.join('').trimEnd());
}
