// The bus daemon (`lars bus`): used by the CLI, the benchmarks and the tests; not part of 'lars/bus'.
export { BusService, type BusServiceOptions } from './bus-service.js';
export { BusEngine } from './bus-engine.js';
export { busSettings, busSettingsFromConfig, type BusSettings } from './settings.js';
export { Sublist, type MatchResult, type SubEntry } from './sublist.js';
export { ProcTable } from './proc-table.js';
export { ProcState, type Proc } from './proc.js';
export type { DropReason, RequestResult } from './bus-stats.js';
