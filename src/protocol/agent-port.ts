/**
 * Which of an agent's UDP ports a client sends a route's requests to: the original client used port
 * `8888 + (modid + cmdid) % 3`, i.e. index `(modid + cmdid) % ports` in the agent's port list. Our
 * agent answers every route on every port, but clients keep this choice so they also work against an
 * original agent, and a threaded agent gives each route to the thread that binds this port. The one
 * place the formula lives (DESIGN §2); the result is in 0..portCount-1 for negative ids too.
 */
export function agentPortIndex(modid: number, cmdid: number, portCount: number): number {
  return (((modid + cmdid) % portCount) + portCount) % portCount;
}
