/**
 * First-fit allocator over page runs, coalescing on free. Runs are kept sorted
 * by first page; the list is bounded by the number of data (every allocation
 * splits at most one run).
 */
export interface PageRun {
  first: number;
  count: number;
}

export class PageAllocator {
  private free: PageRun[];

  constructor(readonly pageCount: number, free?: PageRun[]) {
    this.free = free ? free.map((run) => ({ ...run })) : [{ first: 0, count: pageCount }];
  }

  /** First page of a run of `count` pages, or -1 when no free run is large enough. */
  allocate(count: number): number {
    if (!Number.isInteger(count) || count <= 0) throw new RangeError(`page count ${count}`);
    for (let i = 0; i < this.free.length; i++) {
      const run = this.free[i]!;
      if (run.count < count) continue;
      const first = run.first;
      if (run.count === count) this.free.splice(i, 1);
      else {
        run.first += count;
        run.count -= count;
      }
      return first;
    }
    return -1;
  }

  release(first: number, count: number): void {
    let index = 0;
    while (index < this.free.length && this.free[index]!.first < first) index++;
    const before = this.free[index - 1];
    const after = this.free[index];
    if (before && before.first + before.count > first) throw new Error(`double free of page ${first}`);
    if (after && first + count > after.first) throw new Error(`double free of page ${after.first}`);
    const joinsBefore = before !== undefined && before.first + before.count === first;
    const joinsAfter = after !== undefined && first + count === after.first;
    if (joinsBefore && joinsAfter) {
      before.count += count + after.count;
      this.free.splice(index, 1);
    } else if (joinsBefore) before.count += count;
    else if (joinsAfter) {
      after.first = first;
      after.count += count;
    } else this.free.splice(index, 0, { first, count });
  }

  freeRuns(): PageRun[] {
    return this.free.map((run) => ({ ...run }));
  }

  freePages(): number {
    let total = 0;
    for (const run of this.free) total += run.count;
    return total;
  }

  largestFreeRun(): number {
    let largest = 0;
    for (const run of this.free) largest = Math.max(largest, run.count);
    return largest;
  }
}
