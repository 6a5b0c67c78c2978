import type { Command } from 'commander';

/**
 * Every CLI command module exports `register(program)`; this list is the CLI's table of
 * contents. One line per command file.
 */
export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [];
