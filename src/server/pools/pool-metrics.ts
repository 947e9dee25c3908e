import { Counter, Gauge, Histogram } from 'prom-client'
import type { Registry } from 'prom-client'
import type { PoolInfo } from '../../shared/index.js'

/** The pools' Prometheus metrics, by template. */
export interface PoolMetrics {
  hits: Counter<'template'>
  misses: Counter<'template'>
  /** How long one pooled sandbox took to start, from the start of its create to ready. */
  refillSeconds: Histogram<'template'>
}

/** Registers the pool metrics; ready and in-use gauges are read from `pools()` at each scrape. */
export function createPoolMetrics(registry: Registry, pools: () => PoolInfo[]): PoolMetrics {
  new Gauge({
    name: 'sandstorm_pool_ready',
    help: 'Pooled sandboxes ready to hand over, by template',
    labelNames: ['template'],
    registers: [registry],
    collect() {
      this.reset()
      for (const p of pools()) this.set({ template: p.template }, p.ready)
    },
  })
  new Gauge({
    name: 'sandstorm_pool_in_use',
    help: 'Sandboxes handed out by a pool and not yet destroyed, by template',
    labelNames: ['template'],
    registers: [registry],
    collect() {
      this.reset()
      for (const p of pools()) this.set({ template: p.template }, p.inUse)
    },
  })
  return {
    hits: new Counter({ name: 'sandstorm_pool_hits_total', help: 'Creates served from a warm pool', labelNames: ['template'], registers: [registry] }),
    misses: new Counter({ name: 'sandstorm_pool_misses_total', help: 'Creates that matched a pool but found it empty', labelNames: ['template'], registers: [registry] }),
    refillSeconds: new Histogram({
      name: 'sandstorm_pool_refill_seconds',
      help: 'Time to start one pooled sandbox',
      labelNames: ['template'],
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  }
}
