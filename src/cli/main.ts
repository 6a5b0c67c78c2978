import { Command, CommanderError } from 'commander';
import { CapfiltError, describeError } from '../core/errors.ts';
import { configureLogging, logFormat } from '../core/logger.ts';
import { commands } from './commands.ts';

const program = new Command('capfilt')
  .description('CapFilt data cleaning: BLIP captioner + filter over scraped image-text pairs')
  .version('0.1.0')
  .exitOverride();

for (const register of commands) register(program);

// Logs for people on a terminal, JSON lines for machines: `--json`, a log stream (stderr) that
// is not a terminal, or an explicit CAPFILT_LOG_FORMAT. Decided before any logger exists.
program.hook('preAction', (_program, action) => {
  const asJson = action.opts().json === true;
  const format = asJson ? 'json' : process.env.CAPFILT_LOG_FORMAT ? logFormat() : process.stderr.isTTY ? 'pretty' : 'json';
  configureLogging({ format });
});

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  const { code, message } = describeError(e);
  process.stderr.write(`capfilt: ${message}\n`);
  if (!(e instanceof CapfiltError) && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  process.exit(code === 'CLI_USAGE' ? 2 : 1);
}
