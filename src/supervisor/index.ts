/** The master/worker process model behind `lars up` (issue 7); see docs/operations.md. */
export { Supervisor, type SupervisorOptions } from './supervisor.js';
export { ExitCode, StatusExitCode, StopExitCode } from './exit-codes.js';
export {
  controlPaths,
  controlRequest,
  processAlive,
  readStateFile,
  type ControlReply,
  type ControlRequest,
} from './control.js';
export { formatStatus, type ServiceStatus, type StatusSnapshot } from './status.js';
export { SERVICES, STOP_GROUPS, type ServiceName, type ServiceSpec } from './services.js';
export { supervisorSettings, type SupervisorSettings } from './settings.js';
export { RestartPolicy, type RestartDecision } from './restart-policy.js';
export { HandoffServer, addressKey, pickSlot } from './handoff.js';
export { LineSplitter } from './line-splitter.js';
