/** Longest partial line kept while waiting for its newline; longer ones are emitted in pieces. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;

/**
 * Splits a byte stream into lines (without the newline). A pure state machine (STYLE §1): the
 * supervisor feeds it chunks from a child's stdout/stderr and prefixes each line with the service
 * name. Memory is bounded: a line longer than `maxLineBytes` is cut and emitted in pieces.
 */
export class LineSplitter {
  private partial = '';
  constructor(private readonly maxLineBytes = DEFAULT_MAX_LINE_BYTES) {}

  push(chunk: string): string[] {
    const out: string[] = [];
    let text = this.partial + chunk;
    let nl = text.indexOf('\n');
    while (nl !== -1) {
      out.push(stripCr(text.slice(0, nl)));
      text = text.slice(nl + 1);
      nl = text.indexOf('\n');
    }
    while (text.length > this.maxLineBytes) {
      out.push(text.slice(0, this.maxLineBytes));
      text = text.slice(this.maxLineBytes);
    }
    this.partial = text;
    return out;
  }

  /** The unterminated rest, if any (at end of stream). */
  flush(): string[] {
    const rest = this.partial;
    this.partial = '';
    return rest === '' ? [] : [stripCr(rest)];
  }
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}
