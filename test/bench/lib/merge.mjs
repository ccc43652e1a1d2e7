// The page keeps the latest figures of every part: a run that measured only some parts (--only)
// takes the others from the results embedded in the page it replaces, each with the stamp (date,
// command, load average, build) of the run that measured it.

/** The parts of a run, in page order, and the result fields each one owns. */
export const PART_FIELDS = {
  main: ['points', 'bare', 'bareGet', 'idleRss'],
  sizes: ['valueSizes', 'valueSizesSeconds'],
  five: ['five'],
  million: ['million'],
  rejoin: ['rejoin'],
  join: ['join'],
  disk: ['disk'],
  raft: ['raft'],
};
export const PARTS = Object.keys(PART_FIELDS);

/** Does a results object hold figures for this part? */
function holds(results, part) {
  if (part === 'main') return (results.points?.length ?? 0) > 0;
  return PART_FIELDS[part].some((f) => results[f] !== undefined && results[f] !== null);
}

/** The stamp of a part measured by a run from before per-part stamps existed: that run's own. */
function runStamp(old) {
  return {
    startedAt: old.startedAt,
    runStartedAt: old.startedAt,
    mode: old.mode,
    command: old.command,
    loadStart: old.machine?.loadStart,
    loadEnd: old.machine?.loadEnd,
    build: old.versions?.flotillaBuild,
    commit: old.versions?.flotillaCommit,
    options: { seconds: old.options?.seconds, rounds: old.options?.rounds, keySpace: old.options?.keySpace },
  };
}

/** The parts an old failure was about, from its `parts` or (older pages) its section title. */
function failureParts(f) {
  if (f.parts) return f.parts;
  if (/throughput/.test(f.section)) return ['main', 'sizes'];
  if (/5 members/.test(f.section)) return ['five'];
  if (/keys$/.test(f.section)) return ['million'];
  if (/Raft/.test(f.section)) return ['raft'];
  return [];
}

/**
 * Fill `current` (this run's results, with `current.parts` stamping the parts it measured) with
 * the figures of every other part from `old`. A part this run tried but failed keeps its old
 * figures too (the failure is listed beside them). Returns the list of parts taken from `old`.
 */
export function mergeResults(current, old) {
  current.parts ??= {};
  const kept = [];
  if (!old) return kept;
  for (const part of PARTS) {
    if (current.parts[part] || !holds(old, part)) continue;
    for (const f of PART_FIELDS[part]) if (old[f] !== undefined) current[f] = old[f];
    current.parts[part] = old.parts?.[part] ?? runStamp(old);
    kept.push(part);
  }
  // Failures: this run's, and the old ones about parts this run did not try again (still the
  // latest word on those parts).
  const oldFailures = (old.failures ?? []).map((f) => ({ ...f, parts: failureParts(f), startedAt: f.startedAt ?? old.startedAt }));
  current.failures = [
    ...(current.failures ?? []),
    ...oldFailures.filter((f) => f.parts.length > 0 && f.parts.every((p) => !(current.attempted ?? []).includes(p))),
  ];
  // Notes of the earlier runs whose figures are still on the page.
  const stillShown = new Set(Object.values(current.parts).map((s) => s.runStartedAt));
  const earlier = [...(old.earlierNotes ?? []), ...(old.notes?.length ? [{ startedAt: old.startedAt, notes: old.notes }] : [])];
  current.earlierNotes = earlier.filter((e) => e.startedAt !== current.startedAt && stillShown.has(e.startedAt));
  return kept;
}
