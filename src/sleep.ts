// The one timer promise. On Workers a promise is never shared across
// requests, so code that waits for another request's work polls with this.
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
