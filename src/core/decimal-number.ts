/**
 * A decimal number as a person writes it in a query parameter or a config: digits, an optional
 * point and exponent. Number() alone would also take '0x1', '0b1', 'Infinity' and '' (as 0).
 */
export const DECIMAL_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
