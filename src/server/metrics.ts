import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { SandboxState } from '../shared/index.js'
import type { SandboxCatalog } from './catalog.js'

/** The server's Prometheus metrics, in a registry of its own (two servers in a process do not mix). */
export interface ServerMetrics {
  registry: Registry
  createSeconds: Histogram
  execSeconds: Histogram
  httpRequests: Counter<'route' | 'status'>
}

const states: SandboxState[] = ['starting', 'running', 'paused', 'stopped', 'lost']

/** Creates the registry; the sandbox gauge is read from the catalog at each scrape. */
export function createServerMetrics(catalog: SandboxCatalog): ServerMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  new Gauge({
    name: 'sandstorm_sandboxes',
    help: 'Sandboxes in the catalog, by state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const counts = catalog.countByState()
      // Every state is reported, zeros included, so that a dashboard never sees a series vanish.
      for (const state of new Set([...states, ...counts.keys()])) this.set({ state }, counts.get(state) ?? 0)
    },
  })
  return {
    registry,
    createSeconds: new Histogram({
      name: 'sandstorm_sandbox_create_seconds',
      help: 'Time to create a sandbox, from request to running',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    execSeconds: new Histogram({
      name: 'sandstorm_exec_seconds',
      help: 'Time from an exec request until the command has started',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'sandstorm_http_requests_total',
      help: 'HTTP requests answered, by route and status',
      labelNames: ['route', 'status'],
      registers: [registry],
    }),
  }
}
