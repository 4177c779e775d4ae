import { ClosedError, InvalidArgumentError } from '../../errors.js';
import { Control, type ProcList, type TopicInfo } from '../wire/control.js';
import { BusMsgId } from '../wire/msg-id.js';
import { checkSubject } from '../wire/subject.js';
import type { ClientLink } from './client-link.js';
import { PendingTable } from './pending.js';
import { toProcInfo, toTopicServer, type ProcInfo, type TopicServerInfo } from './types.js';

/**
 * The client's control round trips (QUERY_TOPIC, QUERY_PROC, PING): each carries a request id and is
 * answered by TOPIC_INFO, PROC_LIST or PONG (or an ERR with that id), within the request timeout.
 */
export class ControlRequests {
  readonly pending = new PendingTable<unknown>();

  constructor(
    private readonly link: ClientLink,
    private readonly timeoutMs: number,
    private readonly closed: () => boolean,
    /** Generation of the socket the next staged frame goes to. */
    private readonly nextGen: () => number,
  ) {}

  async queryTopic(topic: string): Promise<TopicServerInfo[]> {
    if (topic !== '') {
      const bad = checkSubject(topic, 'topic');
      if (bad) throw new InvalidArgumentError(bad);
    }
    const id = this.pending.allocate();
    const body = Control.queryTopic.encode({ req_id: id, topic });
    const answer = (await this.send(id, BusMsgId.QueryTopic, body, `query of topic "${topic}"`)) as TopicInfo;
    return answer.servers.map(toTopicServer);
  }

  async queryProc(name: string): Promise<ProcInfo[]> {
    const id = this.pending.allocate();
    const body = Control.queryProc.encode({ req_id: id, name });
    const answer = (await this.send(id, BusMsgId.QueryProc, body, 'query of procs')) as ProcList;
    return answer.procs.map(toProcInfo);
  }

  async ping(): Promise<void> {
    const id = this.pending.allocate();
    await this.send(id, BusMsgId.Ping, Control.ping.encode({ req_id: id }), 'flush');
  }

  /** An answer frame (TOPIC_INFO, PROC_LIST, PONG); false when `msgid` is not one. */
  answer(msgid: number, body: Uint8Array): boolean {
    switch (msgid) {
      case BusMsgId.Pong:
        this.pending.take(Control.pong.decode(body).req_id)?.resolve(undefined);
        return true;
      case BusMsgId.TopicInfo: {
        const m = Control.topicInfo.decode(body);
        this.pending.take(m.req_id)?.resolve(m);
        return true;
      }
      case BusMsgId.ProcList: {
        const m = Control.procList.decode(body);
        this.pending.take(m.req_id)?.resolve(m);
        return true;
      }
    }
    return false;
  }

  private send(id: number, msgid: number, body: Uint8Array, what: string): Promise<unknown> {
    if (this.closed()) return Promise.reject(new ClosedError('the bus client is closed'));
    this.link.stage(msgid, body);
    return this.pending.add(id, this.nextGen(), what, this.timeoutMs);
  }
}
