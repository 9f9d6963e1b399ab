/** The evaluation tool's public surface: classification figures, version agreement and the accuracy gate. */
export { argmax, compareScores, evaluateClassification, type ClassificationReport, type ScoreAgreement, type ClassMetrics, type ClassScores } from './classification-metrics.js';
export { GATE_METRICS, judgeGate, parseGate, type GateClause, type GateMetric, type GateVerdict } from './accuracy-gate.js';
export { compareOutputs, ctcGreedyText, editDistance, evaluateText, normaliseText, OUTPUT_KINDS, outputKindOf, thresholdIou, type AgreementReport, type ExampleOutput, type OutputKind, type TextReport } from './output-comparison.js';
export { classFolderName } from '../monitoring/class-names.js';
export { agreementFigures, DEFAULT_TOP_K, evalOptionsSchema, formatEvalReport, readLabelledImages, runEval, type EvalOptions, type EvalReport, type VersionEvaluation } from './run-eval.js';
export { chartFormatOf, comparisonChartSvg, renderComparisonChart, writeComparisonChart, type ChartFormat } from './comparison-chart.js';
