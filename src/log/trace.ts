/**
 * Per-module trace switch from the environment (STYLE §9): `LARS_TRACE=net,dns` or `LARS_TRACE=all`.
 * `tracer('net')` returns a function that writes one line to stderr, or `undefined` when the module
 * is not traced, so a call site costs one `if` when tracing is off:
 *
 *     const trace = tracer('net');
 *     trace?.(`connection ${id} closed`);
 */
export type TraceFn = (message: string) => void;

let enabled: Set<string> | undefined;

function enabledModules(): Set<string> {
  if (!enabled) {
    enabled = new Set(
      (process.env.LARS_TRACE ?? '')
        .split(',')
        .map((s) => s.trim().toLowerCase())
        .filter(Boolean),
    );
  }
  return enabled;
}

export function isTraced(module: string): boolean {
  const set = enabledModules();
  return set.has('all') || set.has('*') || set.has(module.toLowerCase());
}

export function tracer(module: string): TraceFn | undefined {
  if (!isTraced(module)) return undefined;
  return (message: string) => {
    process.stderr.write(`${new Date().toISOString()} TRACE ${module} ${message}\n`);
  };
}
