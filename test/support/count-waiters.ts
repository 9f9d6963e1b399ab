/** Promises that resolve once a growing count (batches run, entries dropped, …) reaches theirs: tests wait for events, not durations. */
export class CountWaiters {
  private waiters: { count: number; resolve: () => void }[] = [];

  constructor(private readonly current: () => number) {}

  /** Call after the count grows. */
  notify(): void {
    const reached = this.current();
    this.waiters = this.waiters.filter((waiter) => {
      if (reached < waiter.count) return true;
      waiter.resolve();
      return false;
    });
  }

  until(count: number): Promise<void> {
    if (this.current() >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }
}
