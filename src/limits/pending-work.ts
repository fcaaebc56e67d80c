// Work a request started that can outlive its response. A tool that reaches
// its time limit is answered "timed out" at once, but the D1 statement it
// sent keeps running (D1 cannot cancel it) and holds the database until it
// ends. The limits step hands one PendingWork down with the request and
// releases the request's concurrency leases only once everything added to it
// has settled, so a caller cannot start a new statement every timeout while
// the old ones still run.
export class PendingWork {
  readonly #work = new Set<Promise<unknown>>()

  /** Holds the request's leases until `work` settles (either way). */
  add(work: Promise<unknown>): void {
    const settled = work.then(
      () => undefined,
      () => undefined,
    )
    this.#work.add(settled)
    void settled.then(() => this.#work.delete(settled))
  }

  /** Resolves once everything added so far, and anything added while waiting, has settled. */
  async settled(): Promise<void> {
    while (this.#work.size > 0) await Promise.all([...this.#work])
  }
}
