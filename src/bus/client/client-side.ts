import type { ClientLink } from './client-link.js';

/** What the subscription and responder tables need from the BusClient that owns them. */
export interface ClientSide {
  readonly link: ClientLink;
  /** Name of the proc with this number ('' when the bus has not introduced it). */
  nameOf(num: number): string;
  /** Next id for a subscription or served topic of this client. */
  nextSid(): number;
}
