import type { Command } from 'commander';

/**
 * Each command family lives in its own file and exports `register(program)`. Add new families here.
 */
const families: Array<(program: Command) => void> = [];

export function registerCommands(program: Command): void {
  for (const register of families) register(program);
}
