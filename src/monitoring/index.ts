/** Monitoring's public surface: how far inputs and outputs are from what a model was shown, per example and over time. */
export { BLANK_SPREAD_FRACTION, blankFloor, fitMahalanobis, invertMatrix, isBlankRow, rowSpread, isOutOfDistribution, MahalanobisScorer, pooledFeatures, thresholdForFalsePositiveRate, type MahalanobisFit, type Pooling } from './representation-ood.js';
export { binEdgesFromQuantiles, DRIFT_THRESHOLDS, histogram, jensenShannon, ksPValue, ksStatistic, psi, PSI_EMPTY_BIN_SHARE, sortedCopy, wasserstein1 } from './drift-statistics.js';
export { CategoricalWindow, NumericWindow, slidingWindowOptionsSchema, TimedWindow, type SlidingWindowOptions, type SlidingWindowSettings, type WindowSpan } from './sliding-window.js';
export { DriftStateMachine, driftStateOptionsSchema, MIN_DRIFT_SAMPLES, type DriftState, type DriftStateOptions, type DriftStateSnapshot, type DriftTransition } from './drift-state.js';
export { AccuracyWindow, accuracyCaution, calibrate, calibrationCurveSchema, expectedAccuracy, expectedCalibrationError, fitIsotonicCalibration, reliabilityBins, type AccuracySummary, type CalibrationCurve, type LabelOutcome, type ReliabilityBin } from './accuracy-estimate.js';
export { imageProperties, imagePropertyFeatures, pixelToneProperties, tensorFeatureSummaries, tensorFeatureValues, type FeatureGrouping, type ImageProperties, type TensorFeatureSummary, type ToneProperties } from './input-properties.js';
export {
  dataDigest,
  featureBin,
  featureSummarySchema,
  MAX_REFERENCE_PROFILE_BYTES,
  oodDetectorSchema,
  profileCommand,
  readReferenceProfile,
  readReferenceProfileIfPresent,
  REFERENCE_PROFILE_FILE,
  referenceProfileSchema,
  summariseFeature,
  writeReferenceProfile,
  type Calibration,
  type FeatureSummary,
  type OodDetector,
  type ReferenceProfile,
} from './reference-profile.js';
export { categoricalFeatureDrift, countedFeatures, DRIFT_LEVELS, driftJudgement, type DriftJudgement, driftScore, expectedAccuracyAt, psiBeyondChance, levelOf, numericFeatureDrift, summariseProbabilities, worstLevel, type DriftLevel, type FeatureDrift, type OutputSummary } from './drift-report.js';
export { CONFIDENCE_BUCKETS, expectedOodShare, expectedOodShareAt, VersionMonitor, versionMonitorOptionsSchema, type MonitoredRow, type MonitorEvaluation, type MonitorSnapshot, type VersionMonitorOptions, type VersionMonitorSettings } from './version-monitor.js';
export { judgedFeatures, modelJudging, type ModelJudging } from './model-monitoring.js';
