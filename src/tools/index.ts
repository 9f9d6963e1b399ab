/** Tools that run beside serving: so far, a version's reference profile and the report of new data against it. */
export { monitorOptionsSchema, profileOptionsSchema, representationTensor, runMonitor, runProfile, type MonitorOptions, type MonitorReport, type ProfileOptions } from './reference-profiling.js';
