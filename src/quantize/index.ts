/** The quantizer's public surface: the int8 arithmetic, calibration of activation ranges, the graph rewrites and the command. */
export { dequantizeUint8, percentileRange, quantizePerChannelSymmetric, quantizeUint8, roundHalfToEven, uint8Params, type PerChannelInt8, type Uint8Params } from './int8-arithmetic.js';
export { calibrateRanges, exposingTensors, type CalibrationOptions, type RangeMethod } from './calibration.js';
export { quantizeStaticQdq, type StaticQuantization } from './static-qdq.js';
export { DEFAULT_GATES, quantizeOptionsSchema, runQuantize, type QuantizeOptions, type QuantizeReport } from './run-quantize.js';
