import type { Command } from 'commander';
import { register as caption } from './caption.ts';
import { register as models } from './models.ts';
import { register as score } from './score.ts';
import { register as embed } from './embed.ts';
import { register as clipScore } from './clip-score.ts';
import { register as demoData } from './demo-data.ts';
import { register as dashboard } from './dashboard.ts';
import { register as run } from './run.ts';
import { register as worker } from './worker.ts';
import { register as status } from './status.ts';
import { register as demo } from './demo.ts';
import { register as rethreshold } from './rethreshold.ts';
import { register as dedup } from './dedup.ts';
import { register as retryFailed } from './retry-failed.ts';
import { registerTokenize as tokenize } from './tokenize.ts';
import { register as label } from './label.ts';
import { register as report } from './report.ts';

/**
 * Every CLI command module exports `register(program)`; this list is the CLI's table of
 * contents. One line per command file.
 */
export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [
  caption,
  models,
  score,
  embed,
  clipScore,
  dashboard,
  demoData,
  run,
  worker,
  status,
  demo,
  rethreshold,
  dedup,
  retryFailed,
  tokenize,
  label,
  report,
];
