/* global window */
import uPlot from './vendor/uPlot.esm.js';

/**
 * Per-minute call chart of a route (or one host) with uPlot: successes and errors on the left axis,
 * overloaded hosts (stepped, dashed) on the right, and every minute in which some host was overloaded
 * shaded as a band behind the lines, so overload periods stand out at a glance.
 */

const OVERLOAD_FILL = 'rgba(217, 119, 6, 0.16)';
const HEIGHT = 240;

function overloadBands(overloaded) {
  return {
    hooks: {
      drawClear: [
        (u) => {
          const xs = u.data[0];
          const { ctx, bbox } = u;
          ctx.save();
          ctx.fillStyle = OVERLOAD_FILL;
          for (let i = 0; i < xs.length; i++) {
            if (!overloaded[i]) continue;
            const x0 = u.valToPos(xs[i], 'x', true);
            const x1 = u.valToPos(xs[i] + 60, 'x', true);
            ctx.fillRect(x0, bbox.top, Math.max(1, x1 - x0), bbox.height);
          }
          ctx.restore();
        },
      ],
    },
  };
}

/** Draws (or redraws) the chart of `history` (the /api/health/history answer) into `container`. */
export function renderChart(container, history) {
  container.replaceChildren();
  const width = Math.max(240, container.clientWidth || 800);
  const overloaded = history.overloadedHosts;
  const opts = {
    width,
    height: HEIGHT,
    plugins: [overloadBands(overloaded)],
    cursor: { drag: { x: true, y: false } },
    scales: {
      x: { time: true },
      calls: { auto: true, range: (_u, min, max) => [0, Math.max(1, max ?? 1)] },
      hosts: { range: (_u, _min, max) => [0, Math.max(1, max ?? 1)] },
    },
    series: [
      {},
      { label: 'Successes', scale: 'calls', stroke: '#1d8a4e', width: 2, fill: 'rgba(29, 138, 78, 0.06)' },
      { label: 'Errors', scale: 'calls', stroke: '#c0392b', width: 2 },
      {
        label: 'Overloaded hosts',
        scale: 'hosts',
        stroke: '#d97706',
        width: 1.5,
        dash: [5, 4],
        paths: uPlot.paths.stepped({ align: 1 }),
      },
    ],
    axes: [
      {},
      {
        scale: 'calls',
        label:
          history.exact === false ? 'calls per minute (some agents: window counters)' : 'calls per minute',
      },
      {
        scale: 'hosts',
        side: 1,
        label: 'overloaded hosts',
        grid: { show: false },
        incrs: [1, 2, 5, 10, 20, 50, 100],
      },
    ],
  };
  const data = [history.minutes, history.succ, history.err, overloaded];
  const chart = new uPlot(opts, data, container);
  const points = history.succ.filter((v) => v !== null).length;
  container.dataset.points = String(points);
  container.dataset.overloadMinutes = String(overloaded.filter((v) => v).length);
  container.dataset.rendered = 'true';
  const onResize = () => chart.setSize({ width: Math.max(240, container.clientWidth), height: HEIGHT });
  window.addEventListener('resize', onResize);
  return () => {
    window.removeEventListener('resize', onResize);
    chart.destroy();
  };
}
