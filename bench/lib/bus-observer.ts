import type { Logger } from '../../src/log/logger.js';
import { BusService, busSettings, type BusSettings } from '../../src/bus/server/index.js';
import { fromParent, tellParent, type BenchMessage } from './proc.js';

/** A proc state change seen by the bus, with the time it happened and how long the proc had been silent. */
export interface ProcEvent extends BenchMessage {
  type: 'procEvent';
  name: string;
  to: string;
  why: string;
  /** performance.timeOrigin + performance.now() in the bus process (comparable across processes). */
  wallMs: number;
  /** Milliseconds since the bus last heard from the proc, on the bus's clock. */
  silentMs: number;
}

/**
 * The bus daemon role of the liveness and soak benchmarks: a BusService whose log lines about proc
 * state changes are forwarded to the parent as ProcEvents. Runs until the parent says 'stop'.
 */
export async function runObservedBus(
  socket: string,
  settings: Partial<Omit<BusSettings, 'maxFrame'>>,
): Promise<void> {
  const report = (obj: object, msg?: string): void => {
    const o = obj as { proc?: string; to?: string; why?: string };
    if (msg !== 'proc state changed' || o.proc === undefined) return;
    const proc = svc.engine.procs.get(o.proc);
    const silentMs = proc ? svc.engine.now() - proc.lastHeardMs : -1;
    tellParent({
      type: 'procEvent',
      name: o.proc,
      to: o.to ?? '',
      why: o.why ?? '',
      wallMs: performance.timeOrigin + performance.now(),
      silentMs,
    } satisfies ProcEvent);
  };
  const logger: Logger = {
    info: report,
    warn: () => {},
    error: (obj, msg) => process.stderr.write(`bus: ${msg} ${JSON.stringify(obj)}\n`),
    debug: () => {},
    child: () => logger,
  };
  // `report` runs only once the service exists (it logs nothing while being constructed).
  const svc: BusService = new BusService({ socketPath: socket, settings: busSettings(settings), logger });
  await svc.start();
  tellParent({ type: 'listening' });
  await fromParent('stop');
  tellParent({
    type: 'stats',
    stats: JSON.parse(JSON.stringify(svc.engine.stats)) as unknown,
    procs: svc.engine.procs.counts(),
  });
  await svc.close();
  process.exit(0);
}
