/**
 * Bytes of request bodies the server holds at once, across every connection and model: what keeps
 * its memory bounded whatever clients send. Front ends reserve a body's announced length before
 * reading it (so a refusal costs nothing but the headers) and grow the reservation when the body
 * turns out larger (chunked, or inflated from gzip); the reservation is released with the answer.
 */
import { overloaded, type NereidError } from '../core/errors.js';

export class ByteBudget {
  private used = 0;

  /** `setting`: how a refusal names the limit (maxInflightBytes, or the CLI's --max-inflight-bytes). */
  constructor(
    readonly capacity: number,
    readonly setting = 'maxInflightBytes',
  ) {}

  get inUse(): number {
    return this.used;
  }

  /**
   * Takes `bytes` when they fit. A body larger than the whole budget still fits when nothing else
   * is held, or it could never be served (the body size limit bounds it).
   */
  tryTake(bytes: number): boolean {
    if (this.used > 0 && this.used + bytes > this.capacity) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }

  reserve(): BodyReservation {
    return new BodyReservation(this);
  }
}

/** One request's share of the budget. */
export class BodyReservation {
  private held = 0;
  private released = false;
  private alsoRelease?: () => void;

  constructor(private readonly budget: ByteBudget) {}

  get bytes(): number {
    return this.held;
  }

  /** Holds at least `bytes` in all; throws UNAVAILABLE (with a retry hint) when the budget cannot give them. */
  holdAtLeast(bytes: number): void {
    if (bytes <= this.held || this.released) return;
    if (!this.budget.tryTake(bytes - this.held)) throw this.refusal(bytes);
    this.held = bytes;
  }

  /** Also lets `release` go with the reservation (what else the request held until its answer). */
  onRelease(release: () => void): void {
    if (this.released) return release();
    const previous = this.alsoRelease;
    this.alsoRelease = previous ? () => (previous(), release()) : release;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget.give(this.held);
    this.held = 0;
    this.alsoRelease?.();
  }

  private refusal(bytes: number): NereidError {
    return overloaded(
      `the server is holding ${this.budget.inUse} bytes of requests, and this one (${bytes} bytes) would pass its limit of ${this.budget.capacity} (${this.budget.setting})`,
      1000,
    );
  }
}
