import { Histogram, Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { RequestLatencyHistogram } from '../../src/member/metrics.js';

// flotilla_http_request_seconds is counted per request without prom-client's labelled observe;
// a scrape must still read exactly as prom-client's own Histogram would, value for value.

const BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function pair(): { reference: Histogram<'method' | 'route' | 'status'>; fast: RequestLatencyHistogram; r1: Registry; r2: Registry } {
  const r1 = new Registry();
  const r2 = new Registry();
  const config = { name: 'flotilla_http_request_seconds', help: 'Client API request latency', labelNames: ['method', 'route', 'status'] as const, buckets: BUCKETS };
  return {
    reference: new Histogram({ ...config, labelNames: [...config.labelNames], registers: [r1] }),
    fast: new RequestLatencyHistogram({ ...config, registers: [r2] }),
    r1,
    r2,
  };
}

describe('RequestLatencyHistogram', () => {
  test('renders the same text and JSON as prom-client for the same observations', async () => {
    const { reference, fast, r1, r2 } = pair();
    expect(await r2.metrics()).toBe(await r1.metrics());
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const routes = ['/v1/kv/*', '/health', 'unmatched', '/v1/leases/:id'];
    for (let i = 0; i < 20_000; i++) {
      const method = next() < 0.5 ? 'GET' : 'PUT';
      const route = routes[Math.floor(next() * routes.length)];
      const status = [200, 404, 307, 503][Math.floor(next() * 4)];
      // Bucket bounds exactly, 0, and values past the last bound among random ones.
      const seconds = [0.0005, 10, 11, 0, 0.001][i % 50] ?? next() ** 4 * 12;
      reference.observe({ method, route, status: String(status) }, seconds);
      fast.observeRequest(method, route, status, seconds);
    }
    const text = await r2.metrics();
    expect(text).toBe(await r1.metrics());
    expect(text).toContain('flotilla_http_request_seconds_bucket{le="0.0005",method=');
    expect(JSON.stringify(await r2.getMetricsAsJSON())).toBe(JSON.stringify(await r1.getMetricsAsJSON()));
  });

  test('counts every request; reset() empties it', async () => {
    const { fast, r2 } = pair();
    fast.observeRequest('GET', '/v1/kv/*', 200, 0.0001);
    fast.observeRequest('GET', '/v1/kv/*', 200, 0.003);
    fast.observeRequest('GET', '/v1/kv/*', 404, 20);
    const text = await r2.metrics();
    expect(text).toContain('flotilla_http_request_seconds_count{method="GET",route="/v1/kv/*",status="200"} 2');
    expect(text).toContain('flotilla_http_request_seconds_bucket{le="0.002",method="GET",route="/v1/kv/*",status="200"} 1');
    expect(text).toContain('flotilla_http_request_seconds_bucket{le="10",method="GET",route="/v1/kv/*",status="404"} 0');
    expect(text).toContain('flotilla_http_request_seconds_bucket{le="+Inf",method="GET",route="/v1/kv/*",status="404"} 1');
    fast.reset();
    expect(await r2.metrics()).not.toContain('_count');
  });
});
