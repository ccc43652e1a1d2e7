// A dependency-free SVG chart: a 2×2 grid of small panels (line or grouped-bar), flotilla beside
// etcd. Each panel: { kind: 'line' | 'bar', title, yLabel, categories, series: [{ name, color,
// values (null = no data) }], log?: boolean }; or a curve over a numeric x axis: { kind: 'xy',
// title, xLabel, yLabel, series: [{ name, color, points: [[x, y], ...] }], markers?: [{ x, label }] }.

const W = 460;
const H = 290;
const M = { top: 52, right: 16, bottom: 46, left: 62 };

export const COLORS = { flotilla: '#2563eb', etcd: '#ea580c', fastify: '#6b7280', goal: '#16a34a' };

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  if (v >= 100) return `${Math.round(v)}`;
  if (v >= 1) return `${+v.toFixed(1)}`;
  return `${+v.toPrecision(2)}`;
}

function niceTicks(max) {
  if (!(max > 0)) return [0, 1];
  const raw = max / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const ticks = [];
  for (let t = 0; t <= max * 1.0001 + step; t += step) {
    ticks.push(+t.toPrecision(12));
    if (t >= max) break;
  }
  return ticks;
}

function logTicks(min, max) {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const ticks = [];
  for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
  return ticks;
}

/** A panel with a numeric x axis: one polyline per series, no point labels, optional markers. */
function xyPanel(p, ox, oy) {
  const iw = W - M.left - M.right;
  const ih = H - M.top - M.bottom;
  const ok = (v) => typeof v === 'number' && Number.isFinite(v);
  const pts = p.series.flatMap((s) => s.points.filter(([x, y]) => ok(x) && ok(y)));
  const out = [`<g transform="translate(${ox},${oy})">`];
  out.push(`<rect x="0.5" y="0.5" width="${W - 1}" height="${H - 1}" fill="#fff" stroke="#e5e7eb"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${esc(p.title)}</text>`);
  if (pts.length === 0) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#6b7280">no data</text></g>`);
    return out.join('\n');
  }
  const xTicks = niceTicks(Math.max(...pts.map(([x]) => x)));
  const yTicks = niceTicks(Math.max(...pts.map(([, y]) => y)));
  const xTop = xTicks[xTicks.length - 1];
  const yTop = yTicks[yTicks.length - 1];
  const x = (v) => M.left + (v / xTop) * iw;
  const y = (v) => M.top + ih - (v / yTop) * ih;
  for (const t of yTicks) {
    out.push(`<line x1="${M.left}" x2="${M.left + iw}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${M.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#374151">${fmt(t)}</text>`);
  }
  for (const t of xTicks) {
    out.push(`<text x="${x(t).toFixed(1)}" y="${M.top + ih + 16}" text-anchor="middle" font-size="11" fill="#374151">${fmt(t)}</text>`);
  }
  out.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ih}" stroke="#9ca3af"/>`);
  out.push(`<line x1="${M.left}" x2="${M.left + iw}" y1="${M.top + ih}" y2="${M.top + ih}" stroke="#9ca3af"/>`);
  out.push(`<text transform="translate(16,${M.top + ih / 2}) rotate(-90)" text-anchor="middle" font-size="11" fill="#374151">${esc(p.yLabel)}</text>`);
  if (p.xLabel) out.push(`<text x="${M.left + iw / 2}" y="${H - 8}" text-anchor="middle" font-size="11" fill="#374151">${esc(p.xLabel)}</text>`);
  let labelled = 0;
  for (const mk of p.markers ?? []) {
    if (!ok(mk.x) || mk.x < 0 || mk.x > xTop) continue;
    const mx = x(mk.x).toFixed(1);
    out.push(`<line x1="${mx}" x2="${mx}" y1="${M.top}" y2="${M.top + ih}" stroke="${mk.color ?? '#6b7280'}" stroke-dasharray="4 3"/>`);
    if (!mk.label) continue;
    out.push(`<text x="${(x(mk.x) + 3).toFixed(1)}" y="${M.top + 12 + (labelled % 4) * 12}" font-size="10" fill="#374151">${esc(mk.label)}</text>`);
    labelled++;
  }
  for (const s of p.series) {
    const d = s.points
      .filter(([px, py]) => ok(px) && ok(py))
      .map(([px, py], k) => `${k === 0 ? 'M' : 'L'}${x(px).toFixed(1)},${y(py).toFixed(1)}`)
      .join(' ');
    if (d) out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"/>`);
  }
  p.series.forEach((s, j) => {
    const lx = M.left + 10 + j * 120;
    out.push(`<rect x="${lx}" y="${M.top - 20}" width="12" height="8" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 16}" y="${M.top - 12}" font-size="11" fill="#111827">${esc(s.name)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

function panel(p, ox, oy) {
  if (p.kind === 'xy') return xyPanel(p, ox, oy);
  const iw = W - M.left - M.right;
  const ih = H - M.top - M.bottom;
  const refs = p.refLines ?? [];
  const values = [...p.series.flatMap((s) => s.values), ...refs.map((r) => r.value)].filter(
    (v) => typeof v === 'number' && Number.isFinite(v) && v > 0,
  );
  const out = [];
  out.push(`<g transform="translate(${ox},${oy})">`);
  out.push(`<rect x="0.5" y="0.5" width="${W - 1}" height="${H - 1}" fill="#fff" stroke="#e5e7eb"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${esc(p.title)}</text>`);
  if (values.length === 0) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#6b7280">no data</text></g>`);
    return out.join('\n');
  }
  let ticks;
  let y;
  if (p.log) {
    ticks = logTicks(Math.min(...values), Math.max(...values));
    const l0 = Math.log10(ticks[0]);
    const l1 = Math.log10(ticks[ticks.length - 1]);
    y = (v) => M.top + ih - ((Math.log10(v) - l0) / (l1 - l0 || 1)) * ih;
  } else {
    ticks = niceTicks(Math.max(...values));
    const top = ticks[ticks.length - 1];
    y = (v) => M.top + ih - (v / top) * ih;
  }
  for (const t of ticks) {
    out.push(`<line x1="${M.left}" x2="${M.left + iw}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${M.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#374151">${fmt(t)}</text>`);
  }
  out.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ih}" stroke="#9ca3af"/>`);
  out.push(`<line x1="${M.left}" x2="${M.left + iw}" y1="${M.top + ih}" y2="${M.top + ih}" stroke="#9ca3af"/>`);
  out.push(
    `<text transform="translate(16,${M.top + ih / 2}) rotate(-90)" text-anchor="middle" font-size="11" fill="#374151">${esc(p.yLabel)}</text>`,
  );
  const n = p.categories.length;
  const band = iw / n;
  const cx = (i) => M.left + band * (i + 0.5);
  p.categories.forEach((c, i) => {
    out.push(`<text x="${cx(i).toFixed(1)}" y="${M.top + ih + 16}" text-anchor="middle" font-size="11" fill="#374151">${esc(c)}</text>`);
  });
  if (p.xLabel) out.push(`<text x="${M.left + iw / 2}" y="${H - 8}" text-anchor="middle" font-size="11" fill="#374151">${esc(p.xLabel)}</text>`);
  const base = p.log ? M.top + ih : y(0);
  if (p.kind === 'bar') {
    const k = p.series.length;
    const bw = Math.min(34, (band * 0.75) / k);
    p.series.forEach((s, j) => {
      s.values.forEach((v, i) => {
        if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return;
        const x = cx(i) - (k * bw) / 2 + j * bw;
        const top = y(v);
        out.push(`<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(base - top).toFixed(1)}" fill="${s.color}"/>`);
        out.push(`<text x="${(x + bw / 2 - 1).toFixed(1)}" y="${(top - 3).toFixed(1)}" text-anchor="middle" font-size="9" fill="#111827">${fmt(v)}</text>`);
      });
    });
  } else {
    const ok = (v) => typeof v === 'number' && Number.isFinite(v) && v > 0;
    for (const s of p.series) {
      const path = s.values
        .map((v, i) => (ok(v) ? [cx(i), y(v)] : null))
        .filter(Boolean)
        .map(([x, yy], k) => `${k === 0 ? 'M' : 'L'}${x.toFixed(1)},${yy.toFixed(1)}`)
        .join(' ');
      out.push(`<path d="${path}" fill="none" stroke="${s.color}" stroke-width="2.5"/>`);
    }
    for (let i = 0; i < n; i++) {
      // At each point the highest value is labelled above it and the others below, so close
      // values stay readable.
      const top = Math.max(...p.series.map((s) => (ok(s.values[i]) ? s.values[i] : -Infinity)));
      let placedAbove = false;
      for (const s of p.series) {
        const v = s.values[i];
        if (!ok(v)) continue;
        const above = v === top && !placedAbove;
        if (above) placedAbove = true;
        out.push(`<circle cx="${cx(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="4" fill="${s.color}"/>`);
        out.push(`<text x="${(cx(i) + 7).toFixed(1)}" y="${(y(v) + (above ? -7 : 15)).toFixed(1)}" font-size="10" fill="${s.color}">${fmt(v)}</text>`);
      }
    }
  }
  for (const r of refs) {
    const ry = y(r.value).toFixed(1);
    out.push(`<line x1="${M.left}" x2="${M.left + iw}" y1="${ry}" y2="${ry}" stroke="${r.color}" stroke-width="1.5" stroke-dasharray="5 4"/>`);
    // Under the line at the left, where the first bars (the measured points) stay lower.
    out.push(`<text x="${M.left + 4}" y="${(y(r.value) + 13).toFixed(1)}" text-anchor="start" font-size="10" fill="${r.color}">${esc(r.label)}</text>`);
  }
  // Legend, top left.
  p.series.forEach((s, j) => {
    const lx = M.left + 10 + j * 120;
    out.push(`<rect x="${lx}" y="${M.top - 20}" width="12" height="8" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 16}" y="${M.top - 12}" font-size="11" fill="#111827">${esc(s.name)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

/** A grid of panels, two per row, as one SVG document. */
export function renderChart({ title, subtitle, panels }) {
  const rows = Math.ceil(panels.length / 2);
  const width = W * 2 + 30;
  const height = rows * (H + 10) + 60;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#fafafa"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="17" font-weight="700">${esc(title)}</text>`,
    `<text x="${width / 2}" y="44" text-anchor="middle" font-size="12" fill="#4b5563">${esc(subtitle)}</text>`,
  ];
  panels.forEach((p, i) => parts.push(panel(p, 10 + (i % 2) * (W + 10), 56 + Math.floor(i / 2) * (H + 10))));
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
