/** The dashboard's Server-Sent Events, read as its page reads them (fetch, so that a bearer token travels in a header). */
import assert from 'node:assert/strict';

type Json = Record<string, any>;

/** Opens the stream at `url`: `next()` gives each event's `data` object in turn, `close()` ends the request. */
export async function openDashboardStream(url: string, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  return {
    async next(): Promise<Json> {
      for (;;) {
        const end = buffered.indexOf('\n\n');
        if (end >= 0) {
          const event = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          return JSON.parse(event.split('\n').find((line) => line.startsWith('data: '))!.slice(6)) as Json;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('the stream ended');
        buffered += value;
      }
    },
    close: () => controller.abort(),
  };
}
