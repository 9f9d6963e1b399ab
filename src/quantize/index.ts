/** The quantizer's public surface: the int8 arithmetic, calibration of activation ranges, the graph rewrites (static QDQ, dynamic int8 MatMul, float16 weights) and the command. */
export { dequantizeUint8, percentileRange, quantizePerChannelSymmetric, quantizeUint8, roundHalfToEven, uint8Params, type PerChannelInt8, type Uint8Params } from './int8-arithmetic.js';
export { calibrate, calibrateRanges, type Calibration, type CalibrationOptions, type RangeMethod } from './calibration.js';
export { quantizeStaticQdq, type StaticQuantization, type StaticQuantizationOptions } from './static-qdq.js';
export { quantizeDynamicMatMul, type DynamicQuantization } from './dynamic-int8.js';
export { MIN_FP16_ELEMENTS, storeWeightsAsFp16, type Fp16Conversion } from './fp16-weights.js';
export { DEFAULT_GATES, quantizeOptionsSchema, runQuantize, type QuantizeOptions, type QuantizeReport } from './run-quantize.js';
