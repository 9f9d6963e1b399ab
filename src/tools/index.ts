/** Tools that run beside serving: so far, a version's reference profile and the report of new data against it. */
export { monitorOptionsSchema, profileOptionsSchema, representationTensor, runMonitor, runProfile, type MonitorOptions, type MonitorReport, type ProfileOptions } from './reference-profiling.js';
export { measureConfigs, runTune, tuneOptionsSchema, type TuneOptions, type TuneProgress, type TuneReport } from './tune.js';
export { formatTuneReport, settingsToWrite, tuneChartSvg, unmetObjective, writableConfigOf, writeTunedConfig, writeTuneChart } from './tune-report.js';
export { batchSizeCandidates, candidateConfig, chooseWinner, instanceSplits, paretoFront, paretoLevels, type Candidate, type Measured, type Objective } from './tune-search.js';
