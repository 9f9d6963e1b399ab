/**
 * A model's own monitoring settings (its config's `monitoring`: drift thresholds, ignored features, the drift log line,
 * a served OOD threshold) checked against the version's reference profile and put in the terms the monitor, the served
 * verdicts and `nereid monitor --data` read, so that all three judge a version alike.
 */
import type { ModelMonitoring } from '../config/model-config.js';
import { INFORMATIONAL_FEATURES } from './drift-report.js';
import { driftThresholdsOf } from './drift-statistics.js';
import type { ReferenceProfile } from './reference-profile.js';
import { expectedOodShareAt, type VersionMonitorSettings } from './version-monitor.js';

export interface ModelJudging {
  /** What the version's monitor takes from the model's config. */
  monitor: Pick<VersionMonitorSettings, 'drift' | 'ood'>;
  /** The score above which a row is out of distribution (the config's, else the profile's); undefined without a detector. */
  oodThreshold?: number;
}

/** The features a profile's drift is judged on, by the names reports and ignore_features give them. */
export function judgedFeatures(profile: Pick<ReferenceProfile, 'features' | 'classShares' | 'ood'>): string[] {
  return [...Object.keys(profile.features), ...(profile.classShares ? ['output.class'] : []), ...(profile.ood ? ['ood.flagged'] : [])];
}

/**
 * The model's monitoring settings for a version with this profile. Throws, naming the setting, what it expects and what
 * it was given, for an ignored feature the profile does not monitor (a typo would leave the feature counted unsaid) and
 * for an OOD threshold the profile cannot say the in-distribution rate of: without that rate the flagged share has no
 * baseline (`nereid_ood_expected_ratio`, the drift windows' `ood.flagged`), and a threshold set to flag more would read
 * as drift.
 */
export function modelJudging(profile: ReferenceProfile, settings: ModelMonitoring, version: string): ModelJudging {
  const known = judgedFeatures(profile);
  const unknown = settings.drift.ignore_features.filter((feature) => !known.includes(feature));
  if (unknown.length > 0) {
    const already = unknown.filter((feature) => INFORMATIONAL_FEATURES.has(feature));
    throw new Error(
      `monitoring.drift.ignore_features: expected features version ${version}'s reference profile monitors (${known.join(', ')}), got ${unknown.map((feature) => `'${feature}'`).join(', ')}${already.length ? ` (${already.join(', ')} never count)` : ''}`,
    );
  }
  const threshold = settings.ood.threshold;
  const drift = { thresholds: driftThresholdsOf(settings.drift.thresholds), ignoreFeatures: settings.drift.ignore_features, logStateChanges: settings.drift.log_state_changes };
  if (threshold === undefined) return { monitor: { drift }, oodThreshold: profile.ood?.threshold };
  if (!profile.ood) throw new Error(`monitoring.ood.threshold: expected a reference profile with an OOD detector, got version ${version}'s profile without one; rebuild it with nereid profile`);
  const expectedShare = expectedOodShareAt(profile, threshold);
  if (expectedShare === undefined) {
    throw new Error(
      `monitoring.ood.threshold: expected a reference profile that records its held-out scores (ood.heldOutScores, which nereid profile now writes), to say what share of in-distribution rows ${threshold} flags; got version ${version}'s profile built ${profile.provenance.created} without them (its own threshold is ${profile.ood.threshold}); rebuild it with nereid profile`,
    );
  }
  return { monitor: { drift, ood: { threshold, expectedShare } }, oodThreshold: threshold };
}
