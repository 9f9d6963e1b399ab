/**
 * Errors are values with a code a front end can map and a message a user can act on.
 * The codes follow gRPC's status names, which is also how Triton classifies its errors.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'FAILED_PRECONDITION'
  | 'UNIMPLEMENTED'
  | 'ALREADY_EXISTS'
  | 'INTERNAL';

export class NereidError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NereidError';
  }
}

export const invalidArgument = (message: string) => new NereidError('INVALID_ARGUMENT', message);
export const notFound = (message: string) => new NereidError('NOT_FOUND', message);
export const unavailable = (message: string) => new NereidError('UNAVAILABLE', message);

const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  UNAVAILABLE: 503,
  RESOURCE_EXHAUSTED: 429,
  DEADLINE_EXCEEDED: 504,
  CANCELLED: 499,
  PERMISSION_DENIED: 403,
  UNAUTHENTICATED: 401,
  FAILED_PRECONDITION: 400,
  UNIMPLEMENTED: 501,
  ALREADY_EXISTS: 409,
  INTERNAL: 500,
};

export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS[code];
}

/**
 * gRPC status codes (the numbers are fixed by the gRPC spec, so the core needs no gRPC library).
 * The codes are gRPC's names already, so the mapping is one to one, as Triton's is.
 */
const GRPC_STATUS: Record<ErrorCode, number> = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

export function grpcStatusOf(code: ErrorCode): number {
  return GRPC_STATUS[code];
}

/** Anything thrown is reported as a NereidError; unknown failures become INTERNAL with their message. */
export function asNereidError(error: unknown): NereidError {
  if (error instanceof NereidError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new NereidError('INTERNAL', message);
}
