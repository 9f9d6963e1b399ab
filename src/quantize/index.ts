/** The quantizer's public surface (so far: the int8 arithmetic it writes into models, and calibration of activation ranges). */
export { dequantizeUint8, percentileRange, quantizePerChannelSymmetric, quantizeUint8, roundHalfToEven, uint8Params, type PerChannelInt8, type Uint8Params } from './int8-arithmetic.js';
export { calibrateRanges, exposingTensors, type CalibrationOptions, type RangeMethod } from './calibration.js';
