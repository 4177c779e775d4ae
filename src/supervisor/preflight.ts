import { explainListenError, probeListen, type ListenSetting } from '../service/listen-error.js';
import type { ListenSockets } from './listen-sockets.js';
import { SERVICES, type LaunchContext, type ServiceName } from './services.js';

/** The configuration key of each service's address, for an address not of this host. */
const HOST_SETTING: Record<ServiceName, string> = {
  dns: '[dnsserver] ip',
  reporter: '[reporter] ip',
  web: '[web] ip',
  agent: '[agent] ip',
  bus: '[bus] socket',
  shm: '[shm] socket',
};

/** The configuration key that places each service's public port, for messages. */
const PORT_SETTING: Record<ServiceName, string> = {
  dns: '[dnsserver] port',
  reporter: '[reporter] port',
  web: '[web] port',
  agent: '[agent] ports',
  bus: '[bus] socket',
  shm: '[shm] socket',
};

/** The public TCP/UDP addresses of the services run here (Unix sockets are checked by their service). */
export function publicListens(ctx: LaunchContext): ListenSetting[] {
  const out: ListenSetting[] = [];
  for (const spec of SERVICES) {
    if (!ctx.runsHere(spec.name) || spec.workers(ctx.settings) === 0) continue;
    for (const e of spec.listen(ctx)) {
      if (e.proto === 'unix' || e.port === 0) continue;
      out.push({
        what: spec.name === 'web' ? 'the console' : spec.name,
        proto: e.proto === 'udp' ? 'udp' : 'tcp',
        host: e.host,
        port: e.port,
        setting: `${PORT_SETTING[spec.name]} in the config file`,
        hostSetting: `${HOST_SETTING[spec.name]} in the config file`,
      });
    }
  }
  return out;
}

/**
 * Before the master starts any worker (issue 16): every public port must be free. The master holds
 * each socket now (kept for the workers; dns handoff mode listens itself and is only probed), or,
 * without the native addon, probes it. The first taken port throws LARS_ERR_ADDRESS_IN_USE naming the
 * port, the key and the holder, so a second `lars up` with the same ports fails once, at once,
 * instead of restarting workers that cannot bind.
 */
export async function checkPublicPorts(ctx: LaunchContext, sockets: ListenSockets): Promise<void> {
  for (const s of publicListens(ctx)) {
    const handedOff = ctx.settings.dnsHandoff && s.what === 'dns';
    try {
      const fd = handedOff ? undefined : sockets.hold({ proto: s.proto, host: s.host, port: s.port });
      if (fd === undefined) await probeListen(s);
    } catch (err) {
      throw explainListenError(err, [s]) ?? err;
    }
  }
}
