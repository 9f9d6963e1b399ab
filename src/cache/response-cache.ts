/**
 * The response cache as one service a model version consults in one call: the key (cache-key.ts),
 * the stored form of outputs (cached-outputs.ts), single-flight for identical requests in flight,
 * and a store (in-memory LRU or Redis, chosen by the composition root). A store that cannot be
 * reached answers misses, so serving never depends on it.
 */
import { cancelled, NereidError } from '../core/errors.js';
import type { CancelSignal, Parameters } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { ResponseCacheStore } from './cache-store.js';
import { cacheKey } from './cache-key.js';
import { decodeEntry, encodeOutputs, type Annotations } from './cached-outputs.js';

export interface ResponseCacheSettings {
  model: string;
  version: string;
  /** Seconds an entry lives; 0 keeps it until evicted. */
  ttlSeconds: number;
  /** Request parameters that change the result, so they are part of the key. */
  keyParameters: readonly string[];
  /**
   * Whatever else decides an answer, as a fingerprint, asked for each request: a model's is fixed at
   * load (its config and weights), an ensemble's follows the step versions serving now. A change
   * never reuses old entries; undefined (no fingerprint can say now what will answer) computes the
   * request without the cache.
   */
  identity: () => Promise<string | undefined>;
}

export interface CacheableRequest {
  inputs: Record<string, Tensor>;
  outputNames: readonly string[];
  parameters?: Parameters;
  /** A waiter for an identical request in flight stops waiting when its own client leaves. */
  signal?: CancelSignal;
}

export interface CacheOutcome<T> {
  /** Answered without computing: from the store, or from an identical request computed at the same time. */
  hit: boolean;
  /** Time spent in the store: the lookup, and on a miss the insert. */
  ns: number;
  outputs: Record<string, Tensor>;
  /** On a hit, what the answer carried besides its outputs when it was computed (`respond`'s annotationsOf). */
  annotations?: Annotations;
  /** What `compute` returned besides the outputs; undefined on a hit. */
  computed?: T;
}

/** An entry that cannot be read (written by something else under the same Redis prefix) counts as a miss. */
function decodeStored(stored: Buffer): ReturnType<typeof decodeEntry> | undefined {
  try {
    return decodeEntry(stored);
  } catch {
    return undefined;
  }
}

/**
 * Outputs in the order the request asked for them: the key holds the names sorted (the same answer either way), so an
 * entry filled by a request that listed them otherwise would answer in its order. Names not listed (none asked for:
 * every output) keep the stored order, the model's.
 */
function inRequestOrder(outputs: Record<string, Tensor>, names: readonly string[]): Record<string, Tensor> {
  if (names.length < 2) return outputs;
  const ordered: Record<string, Tensor> = {};
  for (const name of names) if (name in outputs) ordered[name] = outputs[name];
  for (const name in outputs) if (!(name in ordered)) ordered[name] = outputs[name];
  return ordered;
}

/** Rejects when the signal aborts; never settles otherwise. */
function whenCancelled(signal: CancelSignal | undefined): Promise<never> | undefined {
  if (!signal) return undefined;
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(cancelled()), { once: true }));
}

export class ResponseCache {
  /** Identical requests being computed now, by key. */
  private readonly inFlight = new Map<string, Promise<{ outputs: Record<string, Tensor> }>>();

  constructor(
    readonly store: ResponseCacheStore,
    private readonly settings: ResponseCacheSettings,
  ) {}

  /**
   * Answers from the store, or computes once for all identical requests in flight (single-flight).
   * A failed computation is not cached, and its waiters compute for themselves instead of sharing
   * the failure, which may have been the first client's alone (a cancellation, say). `annotationsOf`: what a computed
   * answer carries besides its outputs (its out-of-distribution verdict), stored with them so that a hit answers the same.
   */
  async respond<T extends { outputs: Record<string, Tensor> }>(
    request: CacheableRequest,
    compute: () => Promise<T>,
    annotationsOf: (computed: T) => Annotations | undefined = () => undefined,
  ): Promise<CacheOutcome<T>> {
    const identity = await this.settings.identity();
    if (identity === undefined) {
      const computed = await compute();
      return { hit: false, ns: 0, outputs: computed.outputs, computed };
    }
    const key = cacheKey({
      model: this.settings.model,
      version: this.settings.version,
      configFingerprint: identity,
      inputs: request.inputs,
      outputNames: request.outputNames,
      parameters: request.parameters,
      keyParameters: this.settings.keyParameters,
    });
    const lookupStart = performance.now();
    const stored = await this.store.get(key);
    const lookupNs = (performance.now() - lookupStart) * 1e6;
    const decoded = stored && decodeStored(stored);
    if (decoded) return { hit: true, ns: lookupNs, outputs: inRequestOrder(decoded.outputs, request.outputNames), annotations: decoded.annotations };
    const leader = this.inFlight.get(key);
    if (leader) {
      const cancelled = whenCancelled(request.signal);
      const shared = await (cancelled ? Promise.race([leader, cancelled]) : leader).catch((error: unknown) => {
        if (error instanceof NereidError && error.code === 'CANCELLED' && request.signal?.aborted) throw error;
        return undefined;
      });
      if (shared) return { hit: true, ns: lookupNs, outputs: inRequestOrder(shared.outputs, request.outputNames), annotations: annotationsOf(shared as T) };
      const computed = await compute();
      return { hit: false, ns: lookupNs, outputs: computed.outputs, computed };
    }
    const computing = compute();
    this.inFlight.set(key, computing);
    try {
      const computed = await computing;
      const insertStart = performance.now();
      await this.store.set(key, encodeOutputs(computed.outputs, annotationsOf(computed)), this.settings.ttlSeconds);
      return { hit: false, ns: lookupNs + (performance.now() - insertStart) * 1e6, outputs: computed.outputs, computed };
    } finally {
      this.inFlight.delete(key);
    }
  }
}
