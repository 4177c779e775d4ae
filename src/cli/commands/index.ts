import type { Command } from 'commander';
import { registerDbCommands } from './db.js';
import { registerRouteCommands } from './route.js';
import { register as registerDns } from './dns.js';
import { register as registerAgent } from './agent.js';
import { register as registerTestTools } from './test-tools.js';
import { register as registerUp } from './up.js';
import { register as registerReporter } from './reporter.js';
import { register as registerStatus } from './status.js';
import { register as registerStop } from './stop.js';
import { register as registerWeb } from './web.js';
import { register as registerUser } from './user.js';
import { register as registerBus } from './bus.js';
import { register as registerShm } from './shm.js';

/**
 * Each command family lives in its own file and exports `register(program)`. Add new families here.
 */
const families: Array<(program: Command) => void> = [
  registerDbCommands,
  registerRouteCommands,
  registerDns,
  registerAgent,
  registerTestTools,
  registerReporter,
  registerUp,
  registerStatus,
  registerStop,
  registerWeb,
  registerUser,
  registerBus,
  registerShm,
];

export function registerCommands(program: Command): void {
  for (const register of families) register(program);
}
