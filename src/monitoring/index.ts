/** Monitoring's public surface: scores of how far inputs are from what a model was shown. */
export { fitMahalanobis, invertMatrix, MahalanobisScorer, pooledFeatures, thresholdForFalsePositiveRate, type MahalanobisFit, type Pooling } from './representation-ood.js';
