// Live line charts over the last minutes, drawn by uPlot (served from the package, no CDN).
import uPlot from './uPlot.esm.js';

/** Seconds of history a chart spans at least. */
const WINDOW_S = 60;

/** Series colours that read on light and dark backgrounds alike. */
const PALETTE = ['#2f7ed8', '#e4572e', '#17a673', '#a05ad6', '#f0a202', '#5b6b7a', '#d6336c'];

const powersOfTen = (_u, splits) => splits.map((split) => (Number.isInteger(Math.round(Math.log10(split) * 1e6) / 1e6) ? split : null));

/** The container's content width: clientWidth counts its padding, which would push the chart's right edge out of view. */
function widthOf(container) {
  const style = getComputedStyle(container);
  return Math.max(container.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight), 200);
}

/** hh:mm:ss of a time in seconds since the epoch. */
function clockTime(seconds) {
  const date = new Date(seconds * 1000);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((part) => String(part).padStart(2, '0')).join(':');
}

function themeColors() {
  const style = getComputedStyle(document.documentElement);
  return { axis: style.getPropertyValue('--muted').trim() || '#888', grid: style.getPropertyValue('--grid').trim() || 'rgba(128,128,128,0.2)' };
}

/**
 * A chart of several series against time. `update(times, columns)` redraws it with new data; the
 * chart follows its container's width.
 */
export function lineChart(container, { title, series, unit = '', decimals = 2, max, log = false, height = 180, compact = false }) {
  const colors = themeColors();
  const format = (value) => (value === null || value === undefined ? '–' : `${Number(value).toFixed(decimals)}${unit}`);
  const axis = { stroke: colors.axis, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid, width: 1 } };
  const options = {
    title,
    width: widthOf(container),
    height,
    cursor: { drag: { x: false, y: false } },
    // The legend names the series; values show on hover only, so a still page reads cleanly.
    legend: { live: false },
    scales: {
      // At least the last minute, so that a fresh page does not stretch its first seconds across the chart.
      // Read from the data itself: with a single point uPlot widens what it passes here to years.
      x: {
        time: true,
        range: (u) => {
          const times = u.data[0];
          const last = times.length ? times[times.length - 1] : Date.now() / 1000;
          return [Math.min(times.length ? times[0] : last, last - WINDOW_S), last];
        },
      },
      // Latencies on a log scale: a cold start's seconds do not flatten the milliseconds after it.
      y: log ? { distr: 3, log: 10 } : { range: (_u, min, top) => [0, max ?? (Math.max(top ?? 0, min ?? 0) * 1.1 || 1)] },
    },
    axes: [
      // A narrow chart has no room for uPlot's two-line date labels: the time of day, further apart.
      compact ? { ...axis, space: 80, values: (_u, ticks) => ticks.map(clockTime) } : { ...axis },
      // Counts get whole-number ticks only.
      {
        ...axis,
        size: 56,
        ...(decimals === 0 ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] } : {}),
        // A log axis keeps its powers of ten only: a tick and a grid line at every 2…9 crowds it.
        ...(log ? { filter: powersOfTen, grid: { ...axis.grid, filter: powersOfTen }, ticks: { ...axis.ticks, filter: powersOfTen } } : {}),
        values: (_u, ticks) => ticks.map((tick) => (tick === null ? '' : log ? `${+tick.toPrecision(1)}${unit}` : `${+tick.toFixed(decimals)}${unit}`)),
      },
    ],
    series: [
      {},
      ...series.map((label, index) => ({ label, stroke: PALETTE[index % PALETTE.length], width: 2, dash: index % 2 ? [6, 4] : undefined, spanGaps: true, value: (_u, value) => format(value) })),
    ],
  };
  const chart = new uPlot(options, [[], ...series.map(() => [])], container);
  const resize = new ResizeObserver(() => chart.setSize({ width: widthOf(container), height }));
  resize.observe(container);
  return {
    update(times, columns) {
      chart.setData([times, ...columns]);
    },
    destroy() {
      resize.disconnect();
      chart.destroy();
    },
  };
}
