/** A small SVG line of recent values (a sandbox's CPU or memory). */

/** Props of Sparkline. */
export interface SparklineProps {
  /** Oldest first. */
  values: number[]
  /** The value at the top of the box (100 for a percentage). */
  max: number
  /** What the line shows, for the tooltip and screen readers, e.g. "CPU 12%". */
  label: string
  kind: 'cpu' | 'memory'
}

const width = 120
const height = 28

/** A line over the box's width, the latest value at the right; a dash until two samples exist. */
export function Sparkline({ values, max, label, kind }: SparklineProps) {
  const top = max > 0 ? max : 1
  const points = values.map((v, i) => {
    const x = values.length === 1 ? width : (i / (values.length - 1)) * width
    const y = height - 1 - (Math.min(Math.max(v, 0), top) / top) * (height - 2)
    return `${x.toFixed(1)},${y.toFixed(1)}`
  })
  return (
    <span class={`spark spark-${kind}`} title={label}>
      <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={label} data-samples={values.length}>
        {points.length > 1 ? (
          <>
            <polygon class="spark-fill" points={`0,${height} ${points.join(' ')} ${width},${height}`} />
            <polyline class="spark-line" points={points.join(' ')} />
          </>
        ) : (
          <line class="spark-empty" x1="0" y1={height - 1} x2={width} y2={height - 1} />
        )}
      </svg>
      <span class="spark-label">{label}</span>
    </span>
  )
}
