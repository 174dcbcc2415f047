/**
 * The simulator's event queue: a binary heap ordered by (time, insertion
 * number), so events at the same virtual millisecond run in the order they
 * were scheduled and a run is deterministic.
 */
export interface Scheduled<E> {
  atMs: number;
  order: number;
  event: E;
}

export class EventQueue<E> {
  private heap: Scheduled<E>[] = [];
  private nextOrder = 0;

  get size(): number {
    return this.heap.length;
  }

  push(atMs: number, event: E): void {
    if (!Number.isFinite(atMs)) throw new RangeError(`event at ${atMs} ms`);
    const item = { atMs, order: this.nextOrder++, event };
    const heap = this.heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = item;
  }

  peekMs(): number {
    return this.heap.length > 0 ? this.heap[0]!.atMs : Infinity;
  }

  pop(): Scheduled<E> | undefined {
    const heap = this.heap;
    if (heap.length === 0) return undefined;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      const n = heap.length;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && before(heap[right]!, heap[left]!) ? right : left;
        if (!before(heap[child]!, last)) break;
        heap[i] = heap[child]!;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}

function before<E>(a: Scheduled<E>, b: Scheduled<E>): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);
}
