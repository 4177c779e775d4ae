/** Entry of one `lars test qps` worker thread (qps-load.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { qpsWorker, type QpsWorkerData } from './qps-load.js';

const data = workerData as QpsWorkerData | undefined;
if (parentPort && data?.larsQpsWorker) {
  const port = parentPort;
  qpsWorker(
    data,
    (m) => port.postMessage(m),
    (go) => port.once('message', go),
  );
}
