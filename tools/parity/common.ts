import type * as ort from 'onnxruntime-node';
import { f32, i64 } from '../../src/models/runtime/sessions.ts';

/** What every family's parity checker shares: the vectors.json tensor form and the report. */

export interface VTensor {
  dtype: 'float32' | 'int64';
  shape: number[];
  data: number[];
}
export type Json = Record<string, any>;

export interface ParityLine {
  section: string;
  output: string;
  /** Max abs error for floats; number of differing ids for ids. */
  error: number;
  tolerance: number;
  ok: boolean;
  note?: string;
}

export interface ParityReport {
  lines: ParityLine[];
  ok: boolean;
}

export function maxAbs(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let e = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= e)) e = Number.isNaN(d) ? Infinity : d;
  }
  return e;
}

export function rows(t: VTensor): number[][] {
  const [n, m] = t.shape;
  return Array.from({ length: n }, (_, i) => t.data.slice(i * m, (i + 1) * m));
}

export const tensor = (t: VTensor): ort.Tensor => (t.dtype === 'int64' ? i64(t.data, t.shape) : f32(Float32Array.from(t.data), t.shape));

/** A report and the function that adds a checked line to it (printed as it is added). */
export function reporter(print: (line: string) => void): { lines: ParityLine[]; record: (section: string, output: string, error: number, tolerance: number, note?: string) => void; finish: () => ParityReport } {
  const lines: ParityLine[] = [];
  const record = (section: string, output: string, error: number, tolerance: number, note?: string): void => {
    const line = { section, output, error, tolerance, ok: error <= tolerance, note };
    lines.push(line);
    print(`${line.ok ? 'ok  ' : 'FAIL'} ${section}.${output}  max_abs_err=${error.toExponential(3)}  tol=${tolerance}${note ? `  ${note}` : ''}`);
  };
  const finish = (): ParityReport => {
    const ok = lines.length > 0 && lines.every((l) => l.ok);
    print(ok ? `parity OK (${lines.length} checks)` : `parity FAILED (${lines.filter((l) => !l.ok).length} of ${lines.length} checks)`);
    return { lines, ok };
  };
  return { lines, record, finish };
}
